//! The YAML the command line names: `-f` and `--delete` in the order typed. Consecutive `-f`s are
//! one apply, as `kubectl apply -f A -f B`; consecutive `--delete`s one delete. With no file, the
//! seed's files, built in.

use std::path::PathBuf;

use clap::ArgMatches;

use super::SEED;
use crate::manifest::{self, Group, ManifestError, SourceFile};

/// One `-f FILE|DIR` (apply) or `--delete FILE|DIR` of the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub delete: bool,
    pub path: PathBuf,
}

/// What `ebs-csi demo` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Leave the volumes published and the driver running at the end.
    pub keep: bool,
    pub steps: Vec<Step>,
    /// `--zones` and `--node-zone`: the region's zones and the node's, instead of the YAML's.
    pub zones: Vec<String>,
    pub node_zone: Option<String>,
}

impl Options {
    /// The options from `demo`'s arguments; `matches` (the `demo` subcommand's) tells the order
    /// in which `-f` and `--delete` were typed. Without it, the deletes come after the applies.
    pub fn new(
        keep: bool,
        files: Vec<PathBuf>,
        deletes: Vec<PathBuf>,
        matches: Option<&ArgMatches>,
        zones: Vec<String>,
        node_zone: Option<String>,
    ) -> Self {
        let at = |id: &str, n: usize, after: usize| -> Vec<usize> {
            match matches.and_then(|m| m.indices_of(id)) {
                Some(i) => i.collect(),
                None => (after..after + n).collect(),
            }
        };
        let file_at = at("files", files.len(), 0);
        let delete_at = at("delete", deletes.len(), files.len());
        let mut steps: Vec<(usize, Step)> = file_at
            .into_iter()
            .zip(files)
            .map(|(i, path)| (i, Step { delete: false, path }))
            .chain(
                delete_at
                    .into_iter()
                    .zip(deletes)
                    .map(|(i, path)| (i, Step { delete: true, path })),
            )
            .collect();
        steps.sort_by_key(|(i, _)| *i);
        Options {
            keep,
            steps: steps.into_iter().map(|(_, s)| s).collect(),
            zones,
            node_zone,
        }
    }
}

/// The steps as runs: consecutive steps of one kind make one group, read from disk.
pub(super) fn groups(steps: &[Step]) -> Result<Vec<Group>, ManifestError> {
    if steps.is_empty() {
        return Ok(vec![Group {
            delete: false,
            given: vec!["examples/seed".into(), "examples/seed/day-2".into()],
            files: SEED
                .iter()
                .map(|(name, text)| SourceFile {
                    name: format!("{name} (built in)"),
                    text: (*text).to_owned(),
                })
                .collect(),
        }]);
    }
    let mut out = Vec::new();
    let mut start = 0;
    while start < steps.len() {
        let delete = steps[start].delete;
        let end = steps[start..]
            .iter()
            .position(|s| s.delete != delete)
            .map_or(steps.len(), |n| start + n);
        let paths: Vec<PathBuf> = steps[start..end].iter().map(|s| s.path.clone()).collect();
        out.push(Group {
            delete,
            given: paths.iter().map(|p| p.display().to_string()).collect(),
            files: manifest::read_sources(&paths)?,
        });
        start = end;
    }
    Ok(out)
}

/// The demo's first line: what it plays.
pub(super) fn describe(steps: &[Step]) -> String {
    if steps.is_empty() {
        return "the seed's life cycle".into();
    }
    let mut out = String::new();
    for (n, s) in steps.iter().enumerate() {
        let sep = match (n, s.delete) {
            (0, false) => "",
            (0, true) => "delete ",
            (_, false) if steps[n - 1].delete => ", then ",
            (_, true) if !steps[n - 1].delete => ", then delete ",
            _ => ", ",
        };
        out.push_str(sep);
        out.push_str(&s.path.display().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(delete: bool, path: &str) -> Step {
        Step {
            delete,
            path: path.into(),
        }
    }

    #[test]
    fn the_command_line_order_is_kept() {
        let cli = clap::Command::new("demo")
            .arg(
                clap::Arg::new("files")
                    .short('f')
                    .action(clap::ArgAction::Append)
                    .value_parser(clap::value_parser!(PathBuf)),
            )
            .arg(
                clap::Arg::new("delete")
                    .long("delete")
                    .action(clap::ArgAction::Append)
                    .value_parser(clap::value_parser!(PathBuf)),
            );
        let m = cli.get_matches_from(["demo", "-f", "a", "-f", "b", "--delete", "c", "-f", "d"]);
        let files: Vec<PathBuf> = m.get_many::<PathBuf>("files").unwrap().cloned().collect();
        let deletes: Vec<PathBuf> = m.get_many::<PathBuf>("delete").unwrap().cloned().collect();
        let o = Options::new(false, files, deletes, Some(&m), vec![], None);
        assert_eq!(
            o.steps,
            [step(false, "a"), step(false, "b"), step(true, "c"), step(false, "d")]
        );
        assert_eq!(describe(&o.steps), "a, b, then delete c, then d");
    }
}
