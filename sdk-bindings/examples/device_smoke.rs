//! A small device program that uses every wrapped SDK function: reads the app's parameters,
//! declares a stateful event and sends it active, then inactive. Built for the device by
//! `check-device-link.sh` (feature `device`) to check the undefined `ax_*` symbols.
//!
//! Run on a camera as the app `earshot`: `device_smoke`.

use earshot_sdk::event::{EventHandler, EventKind, KeyValueSet};
use earshot_sdk::parameter::Parameters;

const NS: Option<&str> = Some("tnsaxis");

fn topics(set: &mut KeyValueSet) -> earshot_sdk::Result<()> {
    set.add_string("topic0", NS, Some("CameraApplicationPlatform"))?
        .mark_as_source("topic0", NS)?;
    set.add_string("topic1", NS, Some("Earshot"))?
        .mark_as_source("topic1", NS)?;
    set.add_string("topic2", NS, Some("SmokeTest"))?
        .mark_as_source("topic2", NS)?
        .add_nice_names("topic2", NS, Some("Smoke test"), None)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut params = Parameters::new("earshot")?;
    for name in params.list()? {
        println!("{name} = {}", params.get(&name)?);
    }
    params.register_callback("Threshold", |name, value| println!("{name} -> {value}"))?;
    params.set("Threshold", &params.get("Threshold")?, false)?;

    let handler = EventHandler::new()?;
    let mut set = KeyValueSet::new()?;
    topics(&mut set)?;
    set.add_int("count", None, None)?
        .add_double("level", None, None)?
        .mark_as_user_defined("level", None, "wstype:xs:float")?
        .add_bool("active", None, None)?
        .mark_as_data("active", None)?;
    let declaration = handler.declare(
        &set,
        EventKind::Stateful,
        Some(Box::new(|id| println!("declaration {id} complete"))),
    )?;
    // Let the main context deliver the declaration-complete and parameter callbacks.
    earshot_sdk::main_context::dispatch_pending(16);
    declaration.send_state(true, topics)?;
    declaration.send_state(false, topics)?;
    declaration.undeclare()?;
    Ok(())
}
