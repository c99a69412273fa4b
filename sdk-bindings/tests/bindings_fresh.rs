//! The committed `src/bindings.rs` must be exactly what bindgen makes of
//! `include/earshot_axsdk.h` with the options of `gen/options.rs`.
//!
//! Needs libclang at run time (Debian: `libclang-dev`). To regenerate after editing the header
//! or the options:
//!
//! ```text
//! EARSHOT_REGEN=1 cargo test -p earshot-sdk --test bindings_fresh
//! ```

use std::path::Path;

include!("../gen/options.rs");

const REGENERATE: &str = "EARSHOT_REGEN=1 cargo test -p earshot-sdk --test bindings_fresh";

fn generate() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = dir.join("include/earshot_axsdk.h");
    let header = header.to_str().expect("the crate path is UTF-8");
    match earshot_bindgen_builder(header).generate() {
        Ok(bindings) => bindings.to_string(),
        Err(e) => panic!("bindgen failed on {header}: {e} (is libclang-dev installed?)"),
    }
}

#[test]
fn committed_bindings_are_fresh() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bindings.rs");
    let fresh = generate();
    if std::env::var_os("EARSHOT_REGEN").is_some() {
        std::fs::write(&path, &fresh).expect("write src/bindings.rs");
        eprintln!("regenerated {}", path.display());
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != fresh {
        let first = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()));
        let line = |text: &str| {
            text.lines()
                .nth(first)
                .unwrap_or("<end of file>")
                .to_owned()
        };
        panic!(
            "src/bindings.rs is stale: it differs from bindgen's output from line {} on\n  \
             committed: {}\n  fresh:     {}\nregenerate with:\n  {REGENERATE}\n\
             then review the diff (`git diff sdk-bindings/src/bindings.rs`) and commit it",
            first + 1,
            line(&committed),
            line(&fresh),
        );
    }
}
