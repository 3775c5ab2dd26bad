//! The documentation's configuration examples are real: the example files and
//! every complete example in the README (a ```toml block whose first line is
//! `# example: NAME`) load without an error or a warning.

use std::path::Path;

fn parses(text: &str, origin: &str) -> ringlb::config::Config {
    match ringlb::config::parse(text, origin, Vec::<(String, String)>::new()) {
        Ok(config) => {
            assert!(
                config.warnings.is_empty(),
                "{origin} warns: {:?}",
                config.warnings
            );
            config
        }
        Err(errors) => panic!("{origin} is refused:\n{errors}"),
    }
}

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_example_files_load() {
    let short = parses(&read("config/ringlb.toml"), "config/ringlb.toml");
    assert_eq!(short.form, ringlb::config::Form::Short);
    let multi = parses(&read("config/multi.toml"), "config/multi.toml");
    assert_eq!(multi.form, ringlb::config::Form::Full);
    assert!(multi.listeners.len() >= 2 && multi.clusters.len() >= 2);
}

#[test]
fn the_readme_examples_load() {
    let readme = read("README.md");
    let mut examples = 0;
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```toml" {
            continue;
        }
        let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        let Some(name) = block.first().and_then(|l| l.strip_prefix("# example: ")) else {
            continue;
        };
        parses(&block.join("\n"), &format!("README example {name}"));
        examples += 1;
    }
    assert!(examples >= 3, "only {examples} README examples found");
}
