"""Runs scim2-tester (python-scim) against a running scim-sidecar and compares the outcome
with the documented exclusions (README "Conformance").

Usage: python scim2_tester_run.py BASE_URL TOKEN

Zulip accounts are e-mail addresses, so `userName` values the tester generates are made
e-mail shaped (the stock tester fills `userName` with a bare UUID); nothing else about the
tester changes. Exit 0 only when every check passes or is excluded for a written reason.
"""

import sys
import uuid

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient

import scim2_tester.filling as filling
from scim2_tester import Status, check_server

# check title (as printed by the tester) -> reason it cannot pass against Zulip
EXCLUDED: dict[str, str] = {}

_original = filling.generate_random_value


def _email_user_names(context, path, mutability=None, required=None):
    value = _original(context, path, mutability=mutability, required=required)
    if str(path).split(":")[-1].lower() == "username" and isinstance(value, str):
        return f"{uuid.uuid4().hex[:12]}@conformance.example.com"
    return value


filling.generate_random_value = _email_user_names


def main() -> int:
    base, token = sys.argv[1], sys.argv[2]
    scim = SyncSCIMClient(Client(base_url=base, headers={"Authorization": f"Bearer {token}"}))
    scim.discover()
    results = check_server(scim)
    passed, excluded, failed = 0, 0, []
    for r in results:
        name = getattr(r, "title", None) or str(r)
        if r.status in (Status.SUCCESS,):
            passed += 1
        elif name in EXCLUDED:
            excluded += 1
        else:
            failed.append(r)
    for r in failed:
        print(f"FAIL {r.status.name} {getattr(r, 'title', '')}: {getattr(r, 'reason', '')}")
    print(f"scim2-tester: {passed} passed, {len(failed)} failed, {excluded} excluded (documented), {len(results)} total")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
