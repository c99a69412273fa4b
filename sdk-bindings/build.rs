//! Build script of earshot-sdk.
//!
//! * Feature `device`: link libaxevent, libaxparameter and GLib. Inside the ACAP SDK (pkg-config
//!   finds `axevent` and `axparameter`) also run bindgen against the real SDK headers into
//!   OUT_DIR, with the options of `gen/options.rs`; otherwise the committed `src/bindings.rs`
//!   is used and `EARSHOT_AXSDK_LIB_DIR` may name a directory to link against (stub libraries
//!   for `check-device-link.sh`).
//! * Feature `double` (host builds; only dev-dependencies enable it, so only test builds get
//!   it): compile the C test double `tests/double/axsdk_double.c` into
//!   `libearshot_axsdk_double.a` in OUT_DIR and link it in place of the SDK. A host binary
//!   built without it cannot pick up the fake SDK by accident.
//! * Neither: nothing is linked; calling the FFI fails to link, by design.

use std::{env, error::Error, path::PathBuf};

#[cfg(feature = "device")]
include!("gen/options.rs");

fn main() -> Result<(), Box<dyn Error>> {
    for path in [
        "build.rs",
        "gen/options.rs",
        "include/earshot_axsdk.h",
        "include/sdk_wrapper.h",
        "tests/double/axsdk_double.c",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=EARSHOT_AXSDK_LIB_DIR");
    println!("cargo:rerun-if-env-changed=SDKTARGETSYSROOT");
    println!("cargo:rustc-check-cfg=cfg(earshot_sdk_generated)");
    let out = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR not set")?);
    if env::var_os("CARGO_FEATURE_DEVICE").is_some() {
        device(&out)
    } else if env::var_os("CARGO_FEATURE_DOUBLE").is_some() {
        test_double(&out)
    } else {
        Ok(())
    }
}

#[cfg(feature = "device")]
fn device(out: &std::path::Path) -> Result<(), Box<dyn Error>> {
    let event = pkg_config::Config::new()
        .cargo_metadata(false)
        .probe("axevent");
    let parameter = pkg_config::Config::new()
        .cargo_metadata(false)
        .probe("axparameter");
    if let (Ok(_), Ok(_)) = (&event, &parameter) {
        // The SDK sysroot is present: link as pkg-config says and bind the real headers.
        let event = pkg_config::probe_library("axevent")?;
        let parameter = pkg_config::probe_library("axparameter")?;
        let mut builder = earshot_bindgen_builder("include/sdk_wrapper.h");
        for dir in event.include_paths.iter().chain(&parameter.include_paths) {
            builder = builder.clang_arg(format!("-I{}", dir.display()));
        }
        if let Some(sysroot) = env::var_os("SDKTARGETSYSROOT") {
            builder = builder.clang_arg(format!("--sysroot={}", sysroot.to_string_lossy()));
        }
        let bindings = builder
            .generate()
            .map_err(|e| format!("bindgen on the SDK headers failed: {e}"))?;
        bindings.write_to_file(out.join("bindings.rs"))?;
        println!("cargo:rustc-cfg=earshot_sdk_generated");
    } else {
        // No SDK: the committed bindings; the libraries resolve on the device at run time.
        if let Some(dir) = env::var_os("EARSHOT_AXSDK_LIB_DIR") {
            println!("cargo:rustc-link-search=native={}", dir.to_string_lossy());
        }
        for lib in ["axevent", "axparameter", "glib-2.0"] {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
    }
    Ok(())
}

#[cfg(not(feature = "device"))]
fn device(_out: &std::path::Path) -> Result<(), Box<dyn Error>> {
    Err("unreachable: CARGO_FEATURE_DEVICE without cfg(feature = \"device\")".into())
}

fn test_double(out: &std::path::Path) -> Result<(), Box<dyn Error>> {
    let mut build = cc::Build::new();
    build
        .file("tests/double/axsdk_double.c")
        .include("include")
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-std=c11")
        .cargo_metadata(false);
    // Under `RUSTFLAGS=-Zsanitizer=address` instrument the double as well.
    let rustflags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if rustflags.contains("sanitizer=address") {
        build
            .flag("-fsanitize=address")
            .flag("-fno-omit-frame-pointer");
    }
    build.try_compile("earshot_axsdk_double")?;
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static=earshot_axsdk_double");
    Ok(())
}
