// The one place the bindgen options live: used by build.rs (device builds against the real SDK
// headers, through `include!`) and by tests/bindings_fresh.rs (regenerates the committed
// src/bindings.rs from include/earshot_axsdk.h and compares). Change an option here, then
// regenerate: `EARSHOT_REGEN=1 cargo test -p earshot-sdk --test bindings_fresh`.

/// The bindgen builder for `header`, with every option that shapes the output.
///
/// No layout tests: they are compile-time assertions for the generating host's pointer size
/// and would break the armv7 (ILP32) build of bindings generated on x86-64.
/// Prettyplease (pinned in Cargo.lock) instead of rustfmt, so the output does not depend on the
/// installed rustfmt.
#[allow(dead_code)]
fn earshot_bindgen_builder(header: &str) -> bindgen::Builder {
    bindgen::Builder::default()
        .header(header)
        .allowlist_function("ax_.*")
        .allowlist_function("g_free|g_error_free|g_list_free|g_main_context_iteration")
        .allowlist_type("AX.*")
        .allowlist_type("GError|GList|GDateTime|GMainContext|GQuark")
        .allowlist_type("gboolean|gchar|gint|guint|guint32|gdouble|gpointer|gconstpointer")
        .allowlist_var("AX_.*")
        .layout_tests(false)
        .derive_debug(true)
        .derive_default(false)
        .generate_comments(false)
        .formatter(bindgen::Formatter::Prettyplease)
        .rust_target(bindgen::RustTarget::stable(85, 0).expect("1.85 is a known Rust target"))
}
