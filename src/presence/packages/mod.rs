//! The built-in event packages, each an [`EventPackage`] like any added one.
//!
//! * [`presence`] — `presence` (RFC 3856): PIDF documents (RFC 3863, RPID RFC 4480) merged
//!   into one `<presence>` per presentity (the merge lives in `pidf_compose`).
//! * [`dialog`] — `dialog` (RFC 4235) and `dialog;sla` (BLA): `<dialog>` elements of all
//!   publications merged into one dialog-info document, `version` per watcher
//!   (`dialog_compose`).
//! * [`mwi`] — `message-summary` (RFC 3842): the newest publication wins.
//! * [`winfo`] — `presence.winfo` (RFC 3857/3858): generated watcher lists.
//!
//! Invariant: [`builtin`] returns packages with distinct names, in Allow-Events order.

use std::sync::Arc;

use crate::presence::package::EventPackage;

pub mod dialog;
mod dialog_compose;
pub mod mwi;
mod pidf_compose;
pub mod presence;
pub mod winfo;

/// The built-in packages, in registration (Allow-Events) order: `presence`,
/// `presence.winfo`, `dialog`, `dialog;sla`, `message-summary`.
pub fn builtin() -> Vec<Arc<dyn EventPackage>> {
    vec![
        Arc::new(presence::PresencePackage),
        Arc::new(winfo::WinfoPackage),
        Arc::new(dialog::DialogPackage::Dialog),
        Arc::new(dialog::DialogPackage::Sla),
        Arc::new(mwi::MwiPackage),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::ids::EventKey;
    use crate::presence::package::PackageRegistry;

    #[test]
    fn builtin_names_are_distinct_and_presence_first() {
        let names: Vec<String> = builtin().iter().map(|p| p.name().to_string()).collect();
        assert_eq!(names.first().map(String::as_str), Some("presence"));
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn builtin_registry_lists_all_packages_in_order() {
        let r = PackageRegistry::with_builtin();
        assert_eq!(
            r.event_list(),
            vec![
                "presence",
                "presence.winfo",
                "dialog",
                "dialog;sla",
                "message-summary"
            ]
        );
        let types: Vec<(String, String)> = r
            .event_list()
            .iter()
            .map(|n| {
                let p = r.find(&EventKey::new(n)).expect("registered");
                (p.name().to_string(), p.content_types()[0].to_string())
            })
            .collect();
        assert_eq!(
            types,
            [
                ("presence", "application/pidf+xml"),
                ("presence.winfo", "application/watcherinfo+xml"),
                ("dialog", "application/dialog-info+xml"),
                ("dialog;sla", "application/dialog-info+xml"),
                ("message-summary", "application/simple-message-summary"),
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
    }
}
