//! Ids as people type them: a whole id, or its first characters when they name exactly one
//! record (`belay runs show 01a2481c`).

use anyhow::{Result, bail};
use belay_store::{IdKind, Store};

/// The whole id of the `kind` record `given` names: `given` itself when it is a whole UUID,
/// else the one id it begins (at least 4 characters); refused with the candidates when it
/// begins several, and with a hint when none.
pub async fn resolve(store: &dyn Store, kind: IdKind, given: &str) -> Result<String> {
    let given = given.trim();
    if given.len() >= 36 {
        return Ok(given.to_owned());
    }
    let what = match kind {
        IdKind::Run => "run",
        IdKind::Approval => "approval",
        IdKind::Change => "change",
    };
    if given.chars().count() < 4 {
        bail!("`{given}` is too short to name a {what}: give at least 4 characters of its id");
    }
    let found = store.ids_with_prefix(kind, given, 3).await?;
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no {what} id begins with `{given}`"),
        several => bail!(
            "`{given}` begins more than one {what} id ({}{}): give more characters",
            several[..2].join(", "),
            if several.len() > 2 { ", …" } else { "" }
        ),
    }
}
