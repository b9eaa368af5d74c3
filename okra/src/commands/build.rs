//! `okra build`: each component's `[component.x.build] command`, as
//! `spin build` runs it.

use super::AppPaths;
use anyhow::{Context as _, bail};

/// Runs every component's build command in its workdir, printing progress.
pub fn build(app: &AppPaths) -> anyhow::Result<()> {
    let (dir, manifest) = (&app.dir, &app.manifest);
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}", manifest.display()))?;
    let components = doc.get("component").and_then(|c| c.as_table());
    for (id, component) in components.into_iter().flatten() {
        let Some(build) = component.get("build").and_then(|b| b.as_table()) else {
            continue;
        };
        let Some(command) = build.get("command").and_then(|c| c.as_str()) else {
            continue;
        };
        let workdir = match build.get("workdir").and_then(|w| w.as_str()) {
            Some(w) => dir.join(w),
            None => dir.to_path_buf(),
        };
        eprintln!("Building component {id} with `{command}`");
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&workdir)
            .status()
            .with_context(|| format!("running the build command of component {id}"))?;
        if !status.success() {
            bail!(
                "building component {id} failed ({status}): `{command}` in {}",
                workdir.display()
            );
        }
    }
    eprintln!("Finished building all components");
    Ok(())
}
