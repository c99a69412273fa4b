//! The axevent wrappers against the C test double.
#![cfg(not(feature = "device"))]

use std::cell::RefCell;
use std::rc::Rc;

use earshot_sdk::double::{Declared, Double, Sent};
use earshot_sdk::event::{EventHandler, EventKind, KeyValueSet};
use earshot_sdk::{sys, Error};

const NS: Option<&str> = Some("tnsaxis");

fn topics(set: &mut KeyValueSet) -> earshot_sdk::Result<()> {
    set.add_string("topic0", NS, Some("CameraApplicationPlatform"))?
        .mark_as_source("topic0", NS)?;
    set.add_string("topic1", NS, Some("Earshot"))?
        .mark_as_source("topic1", NS)?;
    set.add_string("topic2", NS, Some("GlassBreak"))?
        .mark_as_source("topic2", NS)?;
    Ok(())
}

#[test]
fn key_values_keep_their_types_marks_and_nice_names() {
    let double = Double::take();
    {
        let handler = EventHandler::new().unwrap();
        let mut set = KeyValueSet::new().unwrap();
        topics(&mut set).unwrap();
        set.add_nice_names(
            "topic2",
            NS,
            Some("Glass break"),
            Some("Earshot glass break"),
        )
        .unwrap();
        set.add_int("count", None, Some(-3))
            .unwrap()
            .add_double("level", None, Some(0.25))
            .unwrap()
            .add_bool("active", None, None)
            .unwrap()
            .mark_as_data("active", None)
            .unwrap()
            .add_string("source", None, Some("AudioDevice0Input0"))
            .unwrap()
            .mark_as_user_defined("source", None, "wstype:tt:ReferenceToken")
            .unwrap()
            .add_nice_names("level", None, Some("Level"), None)
            .unwrap();
        let declaration = handler.declare(&set, EventKind::Stateful, None).unwrap();
        assert_eq!(declaration.id(), 1);
        assert_eq!(
            double.declarations(),
            [Declared {
                id: 1,
                stateless: false,
                undeclared: false,
                keys: "tnsaxis:topic0 string=\"CameraApplicationPlatform\" source\n\
                       tnsaxis:topic1 string=\"Earshot\" source\n\
                       tnsaxis:topic2 string=\"GlassBreak\" source nice=Glass break|Earshot glass break\n\
                       :count int=-3\n\
                       :level double=0.25 nice=Level|\n\
                       :active bool=<unset> data\n\
                       :source string=\"AudioDevice0Input0\" user=wstype:tt:ReferenceToken\n"
                    .into(),
            }]
        );
    }
    assert_eq!(double.live_allocs(), 0, "handler and set freed");
}

#[test]
fn declaration_ids_and_stateless_flag() {
    let double = Double::take();
    let handler = EventHandler::new().unwrap();
    let mut set = KeyValueSet::new().unwrap();
    topics(&mut set).unwrap();
    let pulse = handler.declare(&set, EventKind::Stateless, None).unwrap();
    let state = handler.declare(&set, EventKind::Stateful, None).unwrap();
    assert_eq!((pulse.id(), state.id()), (1, 2));
    assert_eq!(
        (pulse.kind(), state.kind()),
        (EventKind::Stateless, EventKind::Stateful)
    );
    let flags: Vec<_> = double
        .declarations()
        .iter()
        .map(|d| (d.id, d.stateless))
        .collect();
    assert_eq!(flags, [(1, true), (2, false)]);
}

#[test]
fn stateful_start_stop_and_undeclare_on_drop() {
    let double = Double::take();
    {
        let handler = EventHandler::new().unwrap();
        let mut set = KeyValueSet::new().unwrap();
        topics(&mut set).unwrap();
        set.add_bool("active", None, None)
            .unwrap()
            .mark_as_data("active", None)
            .unwrap();
        let declaration = handler.declare(&set, EventKind::Stateful, None).unwrap();
        declaration.send_state(true, topics).unwrap();
        declaration.send_state(false, topics).unwrap();
        let sent = double.sent();
        assert_eq!(
            sent.iter()
                .map(|s| (s.declaration, s.active))
                .collect::<Vec<_>>(),
            [(1, Some(true)), (1, Some(false))]
        );
        assert!(!sent[0].had_time_stamp, "NULL time stamp: now");
        assert!(
            sent[0].keys.ends_with(":active bool=true\n"),
            "{}",
            sent[0].keys
        );
        assert!(double.undeclared().is_empty());
    }
    assert_eq!(double.undeclared(), [1], "undeclared when dropped");
    assert!(double.declarations()[0].undeclared);
    assert_eq!(double.live_allocs(), 0, "events, sets and handler freed");
}

#[test]
fn stateless_events_are_pulses() {
    let double = Double::take();
    let handler = EventHandler::new().unwrap();
    let mut set = KeyValueSet::new().unwrap();
    topics(&mut set).unwrap();
    let declaration = handler.declare(&set, EventKind::Stateless, None).unwrap();
    assert_eq!(
        declaration.send_state(true, topics),
        Err(Error::Stateless { id: 1 })
    );
    set.add_double("level", None, Some(-12.5)).unwrap();
    declaration.send(&set).unwrap();
    let sent = double.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0],
        Sent {
            declaration: 1,
            active: None,
            had_time_stamp: false,
            keys: "tnsaxis:topic0 string=\"CameraApplicationPlatform\" source\n\
                   tnsaxis:topic1 string=\"Earshot\" source\n\
                   tnsaxis:topic2 string=\"GlassBreak\" source\n\
                   :level double=-12.5\n"
                .into(),
        }
    );
    declaration.undeclare().unwrap();
    assert_eq!(double.undeclared(), [1]);
}

#[test]
fn gerrors_become_typed_errors_and_are_freed() {
    let double = Double::take();
    let handler = EventHandler::new().unwrap();
    let mut set = KeyValueSet::new().unwrap();

    double.fail_next(
        "ax_event_key_value_set_add_key_value",
        sys::AXEventErrorCode_AX_EVENT_ERROR_INCOMPATIBLE_VALUE as i32,
        "bad value",
    );
    let err = set.add_int("n", None, Some(1)).unwrap_err();
    assert_eq!(
        err,
        Error::Sdk {
            function: "ax_event_key_value_set_add_key_value",
            domain: double.event_domain(),
            code: 2,
            message: "bad value".into(),
        }
    );
    assert!(err.to_string().contains("bad value"), "{err}");

    // A mark on a missing key: the double's own GError (KEY_NOT_FOUND).
    match set.mark_as_source("missing", NS) {
        Err(Error::Sdk { code, .. }) => {
            assert_eq!(
                code,
                sys::AXEventErrorCode_AX_EVENT_ERROR_KEY_NOT_FOUND as i32
            )
        }
        other => panic!("{other:?}"),
    }

    topics(&mut set).unwrap();
    double.fail_next("ax_event_handler_declare", 3, "declaration refused");
    assert!(matches!(
        handler.declare(&set, EventKind::Stateless, Some(Box::new(|_| {}))),
        Err(Error::Sdk {
            function: "ax_event_handler_declare",
            code: 3,
            ..
        })
    ));

    let declaration = handler.declare(&set, EventKind::Stateless, None).unwrap();
    double.fail_next("ax_event_handler_send_event", 5, "send failed");
    assert!(matches!(
        declaration.send(&set),
        Err(Error::Sdk {
            function: "ax_event_handler_send_event",
            code: 5,
            ..
        })
    ));
    double.fail_next("ax_event_handler_undeclare", 4, "undeclare failed");
    assert!(matches!(
        declaration.undeclare(),
        Err(Error::Sdk {
            function: "ax_event_handler_undeclare",
            code: 4,
            ..
        })
    ));

    // NUL bytes never reach C.
    assert_eq!(
        set.add_string("k", None, Some("a\0b")).unwrap_err(),
        Error::Nul {
            what: "value",
            position: 1
        }
    );
    assert_eq!(double.live_errors(), 0, "every GError freed");
}

#[test]
fn declaration_complete_callback_runs_and_a_panic_stays_in_rust() {
    let double = Double::take();
    let handler = EventHandler::new().unwrap();
    let mut set = KeyValueSet::new().unwrap();
    topics(&mut set).unwrap();
    let completed = Rc::new(RefCell::new(Vec::new()));
    let seen = completed.clone();
    let good = handler
        .declare(
            &set,
            EventKind::Stateless,
            Some(Box::new(move |id| seen.borrow_mut().push(id))),
        )
        .unwrap();
    let bad = handler
        .declare(
            &set,
            EventKind::Stateful,
            Some(Box::new(|id| {
                panic!("callback panics for declaration {id}")
            })),
        )
        .unwrap();
    // Both callbacks return into C: the panic was caught.
    assert_eq!(double.complete_declarations(), (2, 2));
    assert_eq!(*completed.borrow(), [good.id()]);
    assert!(!good.callback_panicked());
    assert!(bad.callback_panicked());
}

#[test]
fn dropping_a_declaration_frees_its_callback() {
    let double = Double::take();
    let handler = EventHandler::new().unwrap();
    let mut set = KeyValueSet::new().unwrap();
    topics(&mut set).unwrap();
    let token = Rc::new(());
    let held = token.clone();
    let declaration = handler
        .declare(
            &set,
            EventKind::Stateless,
            Some(Box::new(move |_| {
                let _ = &held;
            })),
        )
        .unwrap();
    assert_eq!(Rc::strong_count(&token), 2);
    drop(declaration);
    assert_eq!(Rc::strong_count(&token), 1, "closure freed after undeclare");
    // An undeclared declaration's callback is never called.
    assert_eq!(double.complete_declarations().0, 0);
}
