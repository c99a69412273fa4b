//! The axparameter wrapper against the C test double.
#![cfg(not(feature = "device"))]

use std::cell::RefCell;
use std::rc::Rc;

use earshot_sdk::double::Double;
use earshot_sdk::parameter::Parameters;
use earshot_sdk::Error;

#[test]
fn get_set_list() {
    let double = Double::take();
    double.seed_param("Threshold", "0.5");
    double.seed_param("Mode", "glass");
    {
        let params = Parameters::new("Earshot").unwrap();
        assert_eq!(params.get("Threshold").unwrap(), "0.5");
        params.set("Threshold", "0.75", true).unwrap();
        assert_eq!(double.param_sets(), (1, 1));
        params.set("Mode", "gunshot", false).unwrap();
        assert_eq!(double.param_sets(), (2, 0));
        assert_eq!(double.param_value("Threshold").as_deref(), Some("0.75"));
        assert_eq!(params.get("Mode").unwrap(), "gunshot");
        assert_eq!(params.list().unwrap(), ["Threshold", "Mode"]);
    }
    assert_eq!(
        double.live_allocs(),
        0,
        "strings, list nodes and handle freed"
    );
}

#[test]
fn empty_list_is_not_an_error() {
    let double = Double::take();
    let params = Parameters::new("Earshot").unwrap();
    assert_eq!(params.list().unwrap(), Vec::<String>::new());
    double.fail_next("ax_parameter_list", 9, "list failed");
    assert!(matches!(
        params.list(),
        Err(Error::Sdk {
            function: "ax_parameter_list",
            code: 9,
            ..
        })
    ));
    assert_eq!(double.live_errors(), 0);
}

#[test]
fn errors_are_typed_and_freed() {
    let double = Double::take();
    double.fail_next("ax_parameter_new", 7, "no such app");
    assert_eq!(
        Parameters::new("Nope").unwrap_err(),
        Error::Sdk {
            function: "ax_parameter_new",
            domain: double.parameter_domain(),
            code: 7,
            message: "no such app".into(),
        }
    );
    let params = Parameters::new("Earshot").unwrap();
    assert!(matches!(
        params.get("Missing"),
        Err(Error::Sdk {
            function: "ax_parameter_get",
            ..
        })
    ));
    assert!(matches!(
        params.set("Missing", "1", false),
        Err(Error::Sdk {
            function: "ax_parameter_set",
            ..
        })
    ));
    assert_eq!(
        params.get("Bad\0name").unwrap_err(),
        Error::Nul {
            what: "parameter name",
            position: 3
        }
    );
    assert_eq!(double.live_errors(), 0);
}

#[test]
fn change_callbacks_run_are_replaced_and_freed() {
    let double = Double::take();
    double.seed_param("Threshold", "0.5");
    let changes = Rc::new(RefCell::new(Vec::new()));
    {
        let mut params = Parameters::new("Earshot").unwrap();
        let seen = changes.clone();
        params
            .register_callback("Threshold", move |name, value| {
                seen.borrow_mut().push(format!("{name}={value}"))
            })
            .unwrap();
        assert_eq!(double.external_change("Threshold", "0.9"), 1);
        assert_eq!(*changes.borrow(), ["root.Earshot.Threshold=0.9"]);
        assert_eq!(Rc::strong_count(&changes), 2);

        // Re-registering replaces (and frees) the first closure.
        params.register_callback("Threshold", |_, _| {}).unwrap();
        assert_eq!(Rc::strong_count(&changes), 1);
        assert_eq!(double.external_change("Threshold", "1.0"), 1);
        assert_eq!(changes.borrow().len(), 1);

        let seen = changes.clone();
        params
            .register_callback("Threshold", move |_, v| {
                seen.borrow_mut().push(v.to_owned())
            })
            .unwrap();
        assert_eq!(Rc::strong_count(&changes), 2);
    }
    assert_eq!(
        Rc::strong_count(&changes),
        1,
        "closure freed with Parameters"
    );
    assert_eq!(double.live_allocs(), 0);
}

#[test]
fn a_panicking_change_callback_stays_in_rust() {
    let double = Double::take();
    double.seed_param("Mode", "glass");
    let mut params = Parameters::new("Earshot").unwrap();
    params
        .register_callback("Mode", |_, value| panic!("callback panics on {value}"))
        .unwrap();
    // The callback ran and returned into C (no unwind across the FFI boundary).
    assert_eq!(double.external_change("Mode", "gunshot"), 1);
    assert!(params.callback_panicked("Mode"));
    assert_eq!(
        double.external_change("Mode", "glass"),
        1,
        "disabled, still safe to call"
    );
    assert!(params.unregister_callback("Mode"));
    assert_eq!(double.external_change("Mode", "x"), 0);

    double.fail_next("ax_parameter_register_callback", 2, "refused");
    assert!(params.register_callback("Mode", |_, _| {}).is_err());
    assert!(!params.unregister_callback("Mode"));
    assert_eq!(double.live_errors(), 0);
}

#[test]
fn queued_changes_arrive_through_the_main_context_on_the_iterating_thread() {
    let double = Double::take();
    double.seed_param("Threshold", "0.5");
    double.seed_param("Mode", "glass");
    let changes = Rc::new(RefCell::new(Vec::new()));
    let mut params = Parameters::new("Earshot").unwrap();
    for name in ["Threshold", "Mode"] {
        let seen = changes.clone();
        params
            .register_callback(name, move |name, value| {
                seen.borrow_mut().push(format!("{name}={value}"))
            })
            .unwrap();
    }
    // Queued from another thread, as the device's D-Bus signal would arrive.
    std::thread::scope(|s| {
        s.spawn(|| {
            double.queue_change("Mode", "gunshot");
            double.queue_change("Threshold", "0.8");
        });
    });
    assert!(
        changes.borrow().is_empty(),
        "nothing runs before the context is iterated"
    );
    assert_eq!(double.queued_changes(), 2);
    assert_eq!(
        earshot_sdk::main_context::dispatch_pending(1),
        1,
        "at most one iteration"
    );
    assert_eq!(*changes.borrow(), ["root.Earshot.Mode=gunshot"]);
    assert_eq!(
        earshot_sdk::main_context::dispatch_pending(16),
        1,
        "then it is idle"
    );
    assert_eq!(
        *changes.borrow(),
        ["root.Earshot.Mode=gunshot", "root.Earshot.Threshold=0.8"]
    );
    assert_eq!(double.param_value("Threshold").as_deref(), Some("0.8"));
    assert_eq!(double.queued_changes(), 0);
    assert_eq!(double.iterations(), 3, "two dispatched, one found nothing");
    assert_eq!(earshot_sdk::main_context::dispatch_pending(0), 0);
    drop(params);
    assert_eq!(double.live_allocs(), 0);
}
