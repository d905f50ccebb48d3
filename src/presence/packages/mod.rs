//! The built-in event packages, each an [`EventPackage`] like any added one.
//!
//! * [`presence`] — `presence` (RFC 3856): PIDF documents (RFC 3863, RPID RFC 4480) merged
//!   into one `<presence>` per presentity (the merge lives in `pidf_compose`).
//!
//! Invariant: [`builtin`] returns packages with distinct names, in Allow-Events order.

use std::sync::Arc;

use crate::presence::package::EventPackage;

mod pidf_compose;
pub mod presence;

/// The built-in packages, in registration (Allow-Events) order.
pub fn builtin() -> Vec<Arc<dyn EventPackage>> {
    vec![Arc::new(presence::PresencePackage)]
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn builtin_names_are_distinct_and_presence_first() {
        let names: Vec<String> = builtin().iter().map(|p| p.name().to_string()).collect();
        assert_eq!(names.first().map(String::as_str), Some("presence"));
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }
}
