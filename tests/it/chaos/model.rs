//! The IdP's intended state and the generator of operation sequences over it.
//!
//! Operations name people and groups by slot (`p`, `g`), never by id: the IdP driver
//! ([`super::idp`]) interprets each one against the model when it runs (an update of a person
//! not yet provisioned provisions them first, a member add picks only active provisioned
//! people), so every generated — and every shrunk — sequence is one a real IdP could send.

use std::collections::BTreeSet;
use std::fmt;

use proptest::prelude::*;

/// People the IdP manages per case.
pub const PEOPLE: usize = 5;
/// Groups the IdP pushes per case.
pub const GROUPS: usize = 3;

pub const GIVEN: [&str; 6] = ["Ana", "Bo", "Chidi", "Dana", "Eli", "Fumiko"];
pub const FAMILY: [&str; 6] = ["Diaz", "Lee", "Okafor", "Novak", "Stone", "Sato"];
pub const ROLES: [&str; 4] = ["member", "moderator", "administrator", "guest"];
pub const GROUP_NAMES: [&str; 6] = ["Engineering", "Support", "Sales", "Ops", "Design", "QA"];

/// Which IdP sends the case (one per realm, as in production).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// PUT for profile pushes, path-less `replace` for (de)activation and renames.
    Okta,
    /// PATCH everything, `"op":"Replace"`, `path` forms, `"False"` strings, DELETE.
    Entra,
}

/// One step of the IdP's traffic, or an event in the world around it.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Assign the person to the app: look up (by `userName`, or `externalId` for Entra),
    /// then link or `POST /Users`; a deactivated person is reactivated. `lookup: false`
    /// posts straight away (the re-create of a deactivated address).
    Assign {
        p: usize,
        lookup: bool,
    },
    Rename {
        p: usize,
        given: usize,
        family: usize,
    },
    ChangeAddress {
        p: usize,
    },
    ChangeRole {
        p: usize,
        role: usize,
    },
    ChangeExternalId {
        p: usize,
    },
    Deactivate {
        p: usize,
    },
    Reactivate {
        p: usize,
    },
    /// Entra's hard delete (the sidecar deactivates); the IdP forgets the id.
    Delete {
        p: usize,
    },
    GroupCreate {
        g: usize,
        name: usize,
    },
    GroupRename {
        g: usize,
        name: usize,
    },
    GroupAdd {
        g: usize,
        people: Vec<usize>,
    },
    GroupRemove {
        g: usize,
        p: usize,
    },
    GroupReplace {
        g: usize,
        people: Vec<usize>,
    },
    GroupDelete {
        g: usize,
    },
    /// An import: `GET /Users` page by page (and the groups).
    Import {
        page: usize,
    },
    /// An IdP's re-read of one person (`GET /Users/{id}`, also after a delete).
    Read {
        p: usize,
    },
    /// An admin edits the person in Zulip's UI (name and role), behind the sidecar's back.
    AdminEdit {
        p: usize,
    },
    /// Zulip drops every event queue (`BAD_EVENT_QUEUE_ID` on the next poll).
    ExpireQueues,
    /// The next events poll never answers (the sidecar's poll times out).
    SilenceEvents,
    /// Zulip's rate limit tightens (a 429 storm with fractional `Retry-After`) or relaxes.
    RateLimit {
        on: bool,
    },
    /// One sidecar replica restarts (graceful shutdown, new process).
    Restart {
        replica: usize,
    },
}

/// An upstream fault injected on one of the Zulip calls the step may make.
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    /// Which of the step's candidate calls (modulo their number).
    pub call: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FaultKind {
    /// The connection is closed before Zulip acted.
    ResetBefore,
    /// Zulip applied the call, then the connection was closed (unknown outcome).
    ResetAfter,
    /// No answer before the sidecar's upstream timeout; Zulip did nothing.
    TimeoutBefore,
    /// Zulip applied the call, the answer never came (unknown outcome).
    TimeoutAfter,
    /// `500` with Zulip's error envelope.
    Http500,
    /// `502` with an HTML page (a proxy in front of Zulip).
    Html502,
    /// Zulip applied the call, then answered 500 (the error is a lie about the outcome).
    Http500AfterApply,
    /// `n` 429s in a row with `Retry-After: tenths/10` seconds.
    Storm429 { n: usize, tenths: u8 },
    /// The answer comes after `request_deadline_ms`, applied only then.
    SlowPastDeadline,
}

/// One generated step: the operation, the replica its requests go to first, a fault.
#[derive(Clone, PartialEq)]
pub struct Step {
    pub op: Op,
    pub replica: usize,
    pub fault: Option<Fault>,
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} @r{}", self.op, self.replica)?;
        if let Some(fault) = &self.fault {
            write!(f, " !{:?}#{}", fault.kind, fault.call)?;
        }
        Ok(())
    }
}

/// A generated case: one IdP, a sequence of steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub dialect: Dialect,
    pub steps: Vec<Step>,
}

// === generator ===

fn person() -> impl Strategy<Value = usize> {
    0..PEOPLE
}

fn group() -> impl Strategy<Value = usize> {
    0..GROUPS
}

fn people() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(person(), 0..=3)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (person(), any::<bool>()).prop_map(|(p, lookup)| Op::Assign { p, lookup: lookup || p % 2 == 0 }),
        3 => (person(), 0..GIVEN.len(), 0..FAMILY.len()).prop_map(|(p, given, family)| Op::Rename { p, given, family }),
        2 => person().prop_map(|p| Op::ChangeAddress { p }),
        3 => (person(), 0..ROLES.len()).prop_map(|(p, role)| Op::ChangeRole { p, role }),
        1 => person().prop_map(|p| Op::ChangeExternalId { p }),
        3 => person().prop_map(|p| Op::Deactivate { p }),
        2 => person().prop_map(|p| Op::Reactivate { p }),
        1 => person().prop_map(|p| Op::Delete { p }),
        3 => (group(), 0..GROUP_NAMES.len()).prop_map(|(g, name)| Op::GroupCreate { g, name }),
        1 => (group(), 0..GROUP_NAMES.len()).prop_map(|(g, name)| Op::GroupRename { g, name }),
        3 => (group(), people()).prop_map(|(g, people)| Op::GroupAdd { g, people }),
        2 => (group(), person()).prop_map(|(g, p)| Op::GroupRemove { g, p }),
        1 => (group(), people()).prop_map(|(g, people)| Op::GroupReplace { g, people }),
        1 => group().prop_map(|g| Op::GroupDelete { g }),
        1 => (1usize..4).prop_map(|page| Op::Import { page }),
        1 => person().prop_map(|p| Op::Read { p }),
        1 => person().prop_map(|p| Op::AdminEdit { p }),
        1 => Just(Op::ExpireQueues),
        1 => Just(Op::SilenceEvents),
        1 => any::<bool>().prop_map(|on| Op::RateLimit { on }),
        1 => (0usize..3).prop_map(|replica| Op::Restart { replica }),
    ]
}

fn fault_kind() -> impl Strategy<Value = FaultKind> {
    prop_oneof![
        Just(FaultKind::ResetBefore),
        Just(FaultKind::ResetAfter),
        Just(FaultKind::TimeoutBefore),
        Just(FaultKind::TimeoutAfter),
        Just(FaultKind::Http500),
        Just(FaultKind::Html502),
        Just(FaultKind::Http500AfterApply),
        (1usize..6, 1u8..8).prop_map(|(n, tenths)| FaultKind::Storm429 { n, tenths }),
        Just(FaultKind::SlowPastDeadline),
    ]
}

fn step(replicas: usize) -> impl Strategy<Value = Step> {
    let fault = prop_oneof![
        3 => Just(None),
        1 => (fault_kind(), 0usize..4).prop_map(|(kind, call)| Some(Fault { kind, call })),
    ];
    (op(), 0..replicas, fault).prop_map(|(op, replica, fault)| Step { op, replica, fault })
}

/// Cases of up to `max_ops` steps for a cluster of `replicas` sidecars.
pub fn case(replicas: usize, max_ops: usize) -> impl Strategy<Value = Case> {
    let dialect = prop_oneof![Just(Dialect::Okta), Just(Dialect::Entra)];
    (dialect, proptest::collection::vec(step(replicas), 1..=max_ops))
        .prop_map(|(dialect, steps)| Case { dialect, steps })
}

// === the intended state ===

/// What the IdP wants Zulip to hold for one person.
#[derive(Clone, Debug)]
pub struct Person {
    pub slot: usize,
    /// The SCIM id the IdP stores (forgotten after a DELETE).
    pub id: Option<u64>,
    /// The Zulip account this person has (kept after a DELETE: it is only deactivated).
    pub account: Option<u64>,
    pub address: String,
    /// Every address this person ever used (none may belong to a second account).
    pub past_addresses: Vec<String>,
    pub given: String,
    pub family: String,
    pub role: &'static str,
    pub active: bool,
    pub external_id: String,
    /// The IdP ever provisioned this person.
    pub assigned: bool,
    /// The last write for this person did not end in a 2xx: only the IdP's repair pass is
    /// expected to fix it.
    pub dirty: bool,
    /// An admin edited the account in Zulip since the IdP last pushed the whole profile.
    pub edited: bool,
}

impl Person {
    pub fn display(&self) -> String {
        format!("{} {}", self.given, self.family)
    }
}

/// What the IdP wants for one group.
#[derive(Clone, Debug)]
pub struct Group {
    pub slot: usize,
    pub id: Option<u64>,
    pub name: String,
    /// Person slots. Zulip keeps a deactivated member in the group (SCIM shows only the
    /// active ones), so this set does too.
    pub members: BTreeSet<usize>,
    /// Zulip groups this slot had before DELETEs: each must be deactivated.
    pub deleted: Vec<u64>,
    pub dirty: bool,
}

/// The IdP's intended state for a case.
#[derive(Clone, Debug)]
pub struct Model {
    pub people: Vec<Person>,
    pub groups: Vec<Group>,
    /// Makes every new address and externalId unique.
    pub serial: usize,
}

impl Model {
    pub fn new() -> Model {
        let people = (0..PEOPLE)
            .map(|slot| Person {
                slot,
                id: None,
                account: None,
                address: format!("p{slot}@zulip.example.com"),
                past_addresses: vec![format!("p{slot}@zulip.example.com")],
                given: GIVEN[slot % GIVEN.len()].to_string(),
                family: FAMILY[slot % FAMILY.len()].to_string(),
                role: "member",
                active: true,
                external_id: format!("ext-{slot}"),
                assigned: false,
                dirty: false,
                edited: false,
            })
            .collect();
        let groups = (0..GROUPS)
            .map(|slot| Group {
                slot,
                id: None,
                name: String::new(),
                members: BTreeSet::new(),
                deleted: Vec::new(),
                dirty: false,
            })
            .collect();
        Model { people, groups, serial: 0 }
    }

    pub fn next_serial(&mut self) -> usize {
        self.serial += 1;
        self.serial
    }

    /// Slots of people that exist, are active and have an id the IdP knows.
    pub fn is_member_candidate(&self, p: usize) -> bool {
        let person = &self.people[p];
        person.id.is_some() && person.active
    }

    /// Whether a live group (other than `g`) already uses `name`.
    pub fn group_name_taken(&self, name: &str, g: usize) -> bool {
        self.groups.iter().any(|other| other.slot != g && other.id.is_some() && other.name == name)
    }
}
