//! App-only releases (`db.copy: none`): the new generation has no data of its own
//! and runs on the database the serving generation runs on. Nothing is copied and
//! nothing freezes: the cut-over starts the new app beside the old one and moves
//! traffic once it is healthy (`cutover.rs`), and going back is code-only.
//!
//! The database runs as it was made, so the spec's `db` section must still
//! describe it; a change there needs a copy and is refused here. A kill at any
//! step leaves either nothing of the new generation but a probe (its marker is
//! written before its app is made) or a generation that shares the database and is
//! ready, whose cut-over the next plan finishes.

use crate::desired::{self, Role};
use crate::spec::Spec;

use super::builder::Builder;
use super::recognise::{Gen, Host};
use super::{Action, Problem};

/// Makes generation `target` a generation running on generation `db`'s database.
pub(super) fn share(b: &mut Builder, host: &Host, target: u64, tgen: &Gen, db: u64) {
    let spec = b.spec;
    b.clear_half_made(target, tgen);
    let dbgen = host.generation(db);
    if let Some(k) = dbgen.db
        && !desired::made_as(spec, &desired::db(spec, db), k.hash())
    {
        b.refuse(Problem {
            container: Some(k.c.name.clone()),
            seen: format!(
                "the spec asks for `db.copy: none` (generation {target} runs on {}), but its \
                 `db` section no longer describes that database as it was made",
                k.c.name
            ),
            fix: "a change to the database needs a copy: remove `copy: none` (or set `copy: \
                  auto`) to make a new database, or revert the `db` section"
                .into(),
        });
    }
    b.ensure_db_up(db, &dbgen, &format!("generation {target}'s app runs on it"));
    b.push(
        Action::ShareDb {
            generation: target,
            db,
        },
        format!(
            "db.copy: none: generation {target} keeps {}: no copy, no freeze",
            desired::container_name(spec, Role::Db, db)
        ),
    );
}

/// The plan's line on how the data moves.
pub(super) fn reason(spec: &Spec, target: u64, from: u64, db: u64) -> String {
    format!(
        "db.copy: none: generation {target}'s app runs on {} beside generation {from}'s and \
         takes over once healthy; no data is copied{}",
        desired::container_name(spec, Role::Db, db),
        if spec.front.is_some() {
            ", and no request waits"
        } else {
            "; without a front the public ports pass with a container restart's short gap"
        }
    )
}
