//! The package's `html/` directory: `earshot run`'s settings page and live view.
//!
//! The device's web server serves `html/` at `/local/earshot/` and opens
//! [`crate::manifest::SETTING_PAGE`] from the app list; the page's relative URLs (`api/...`,
//! `view/...`) reach `earshot run --http` through the manifest's `reverseProxy`.
//!
//! The files are the workspace's `src/web/page/`, embedded when this crate is compiled (the
//! same files `earshot` embeds to serve the page itself), so a package holds exactly the page
//! of the checked-out tree and packing reads nothing from disk that could differ.

/// The directory the files go in, inside the package.
pub const DIR: &str = "html";

/// The files under [`DIR`]: `(name, contents)`, sorted by name.
pub const FILES: [(&str, &str); 3] = [
    ("app.js", include_str!("../../src/web/page/app.js")),
    ("index.html", include_str!("../../src/web/page/index.html")),
    ("style.css", include_str!("../../src/web/page/style.css")),
];

/// The package entry name of `file` under [`DIR`], e.g. `html/index.html`.
pub fn entry_name(file: &str) -> String {
    format!("{DIR}/{file}")
}

/// [`FILES`] as owned `(name under html/, contents)`, as [`crate::eap::PackageInputs::html`]
/// takes them.
pub fn files() -> Vec<(String, String)> {
    FILES
        .iter()
        .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::SETTING_PAGE;

    #[test]
    fn files_are_the_workspace_page_and_include_the_setting_page() {
        let page_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/web/page");
        let mut on_disk: Vec<String> = std::fs::read_dir(&page_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let names: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(on_disk, names, "src/web/page/ has files the package lacks");
        for (name, text) in FILES {
            assert!(!text.is_empty(), "{name}");
            assert_eq!(std::fs::read_to_string(page_dir.join(name)).unwrap(), text);
        }
        assert!(names.contains(&SETTING_PAGE));
        let index = FILES.iter().find(|(n, _)| *n == SETTING_PAGE).unwrap().1;
        // The page must work from /local/earshot/: relative URLs for its own files.
        for reference in ["href=\"style.css\"", "src=\"app.js\""] {
            assert!(index.contains(reference), "{reference}");
        }
        assert_eq!(entry_name("index.html"), "html/index.html");
        assert_eq!(files()[1].0, "index.html");
    }
}
