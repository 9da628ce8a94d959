"""Runs scim2-tester (python-scim) against a running scim-sidecar and compares the outcome
with the documented exclusions (README "Conformance").

Usage: python scim2_tester_run.py BASE_URL TOKEN

Zulip accounts are e-mail addresses, so `userName` values the tester generates are made
e-mail shaped (the stock tester fills `userName` with a bare UUID), and the `emails` it
generates name that same address as the one work, primary entry (a Zulip account has one
address, which `userName` and the primary e-mail both name; independent random addresses
would be refused as a second address); nothing else about the tester changes. Exit 0 only when every check passes or is excluded for a written reason.
"""

import sys
import uuid

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient

import scim2_tester.filling as filling
import scim2_tester.checkers  # noqa: F401  (loads every checker module)
from scim2_tester import Status, check_server

# (check title, text in the tester's reason, resource type) -> why it cannot pass against
# Zulip; an empty title or resource type matches any. Each entry is also listed, with the
# same reason, in README.md "Conformance".
EXCLUDED: list[tuple[str, str, str, str]] = [
    ("", "'externalId'", "Group",
     "a Zulip group has nowhere to store externalId (Users keep theirs in a custom profile "
     "field); it is accepted and ignored, as Zulip's built-in SCIM does, and filters on it "
     "answer honestly (no match)"),
    ("object_deletion", "still exists after deletion", "",
     "Zulip cannot delete accounts over its REST API: DELETE deactivates and the account stays "
     "visible as active:false (Okta's CRUD test and re-provisioning depend on that)"),
    ("check_remove_attribute", "'active'", "",
     "a Zulip account is always active or deactivated: removing active is refused (400 mutability)"),
    ("check_remove_attribute", "'role'", "",
     "every Zulip account has a role: removing role is refused (400 mutability)"),
    ("check_replace_attribute", "unexpected value for 'name'", "",
     "Zulip stores one full name: a name.formatted that disagrees with givenName/familyName "
     "cannot be kept next to them (the realm's name style decides which wins)"),
    ("check_add_attribute", "unexpected value for 'members'", "",
     "members[].display is read-only and filled by the server with the member's name, "
     "as Zulip's built-in SCIM does; the tester compares it with what it sent (nothing)"),
    ("check_replace_attribute", "unexpected value for 'members'", "",
     "same as above: the server fills members[].display"),
]


def exclusion(title: str, reason: str, resource_type: str) -> str | None:
    for t, text, rt, why in EXCLUDED:
        if (not t or t == title) and text in reason and (not rt or rt == resource_type):
            return why
    return None

_original = filling.generate_random_value


_last_user_name: list[str] = []


def _email_user_names(context, path, mutability=None, required=None):
    value = _original(context, path, mutability=mutability, required=required)
    name = str(path).split(":")[-1].lower()
    if name == "username" and isinstance(value, str):
        value = f"{uuid.uuid4().hex[:12]}@conformance.example.com"
        _last_user_name[:] = [value]
    elif name in ("emails.value", "emails.primary", "emails.type") and value is not None and _last_user_name:
        # Sub-attributes filled one by one: the same address, work, primary.
        one = {"emails.value": _last_user_name[0], "emails.primary": True}.get(name)
        if one is None:
            kind = value[0] if isinstance(value, list) else value
            one = type(kind)("work") if not isinstance(kind, str) else "work"
        value = [one] if isinstance(value, list) else one
    elif name == "emails" and isinstance(value, list) and value and _last_user_name:
        # The user's one address: the userName just generated, as the work, primary entry.
        email = value[0]
        email.value = _last_user_name[0]
        email.primary = True
        kind = getattr(email, "type", None)
        email.type = type(kind)("work") if kind is not None and not isinstance(kind, str) else "work"
        value = [email]
    return value


# The checkers import the function by name: replace it wherever it was imported.
for _module in list(sys.modules.values()):
    if getattr(_module, "__name__", "").startswith("scim2_tester") and getattr(
        _module, "generate_random_value", None
    ) is _original:
        _module.generate_random_value = _email_user_names


def main() -> int:
    base, token = sys.argv[1], sys.argv[2]
    scim = SyncSCIMClient(Client(base_url=base, headers={"Authorization": f"Bearer {token}"}))
    scim.discover()
    results = check_server(scim)
    passed, excluded, failed = 0, [], []
    for r in results:
        title = getattr(r, "title", "") or ""
        reason = str(getattr(r, "reason", "") or "")
        if r.status == Status.SUCCESS:
            passed += 1
        elif (why := exclusion(title, reason, str(getattr(r, "resource_type", "") or ""))) is not None:
            excluded.append((title, reason.splitlines()[0] if reason else "", why))
        else:
            failed.append((r.status.name, title, reason))
    for title, reason, why in excluded:
        print(f"EXCLUDED {title}: {reason}\n    because {why}")
    for status, title, reason in failed:
        print(f"FAIL {status} {title}: {reason}")
    print(f"scim2-tester ran {len(results)} checks; {len(excluded)} excluded for documented reasons")
    print(f"scim2-tester: {passed} passed, {len(failed)} failed")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
