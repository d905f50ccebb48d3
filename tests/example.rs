//! The embedding example (`examples/custom_package.rs`) really works: a package registered
//! by a library user gets PUBLISH and SUBSCRIBE handled like the built-in ones.

#[path = "../examples/custom_package.rs"]
#[allow(dead_code, unreachable_pub)]
mod example;

#[test]
fn a_package_registered_by_an_embedder_is_published_and_notified() {
    let (notify, refused) = example::demo();
    assert_eq!(
        refused, "SIP/2.0 403 Forbidden",
        "the package's own SUBSCRIBE check"
    );
    assert!(notify.starts_with("NOTIFY "), "{notify}");
    assert!(notify.contains("Event: as-feature-event"), "{notify}");
    assert!(
        notify.contains("Content-Type: application/x-as-feature-event+xml"),
        "{notify}"
    );
    assert!(
        notify.contains("<doNotDisturbOn>true</doNotDisturbOn>"),
        "{notify}"
    );
}
