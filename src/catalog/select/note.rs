//! What selection tells the user: bundles kept outside a range to bridge a chain, and
//! dependencies added, reported, or not satisfiable. Catalog text is shown escaped.

use std::fmt;

use crate::text::untrusted;

use super::super::fbc::Requirement;

/// One thing the filter did that the user should hear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A bundle outside the range kept so that the chain has no gap.
    Bridge { package: String, channel: String, bundle: String, version: Option<String>, range: String },
    /// A bundle added because a kept bundle needs it: (package, bundle), on `channel`.
    Added { added: (String, String), channel: String, needed_by: (String, String), requirement: Requirement },
    /// A bundle kept to join a dependency added to a channel to the channel's kept head (so
    /// that the channel keeps one head).
    Joined { package: String, channel: String, bundle: String, dependency: String },
    /// A dependency the catalog has, not added (`skipDependencies`): what would satisfy it.
    NotAdded { needed_by: (String, String), requirement: Requirement, provider: (String, String, String) },
    /// A dependency no bundle of the catalog satisfies (a warning: the operator may not install).
    Unsatisfied { needed_by: (String, String), requirement: Requirement },
}

impl Note {
    /// Whether the note is a warning (something may not work) rather than information.
    pub fn is_warning(&self) -> bool {
        matches!(self, Note::Bridge { .. } | Note::Joined { .. } | Note::NotAdded { .. } | Note::Unsatisfied { .. })
    }
}

fn bundle((package, name): &(String, String)) -> String {
    format!("{} (package {})", untrusted(name), untrusted(package))
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Package { package, range } => {
                write!(f, "olm.package.required {} {}", untrusted(package), untrusted(&range.to_string()))
            }
            Requirement::Unreadable { package, range } => write!(
                f,
                "olm.package.required {} {} (no package name or no semver range)",
                untrusted(package),
                untrusted(range)
            ),
            Requirement::Gvk(g) => {
                write!(f, "olm.gvk.required {}/{}/{}", untrusted(&g.group), untrusted(&g.version), untrusted(&g.kind))
            }
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Bridge { package, channel, bundle, version, range } => write!(
                f,
                "kept {} {} of package {} channel {}: outside {} but needed to bridge the upgrade chain",
                untrusted(bundle),
                version.as_deref().map(untrusted).unwrap_or_else(|| "(no version)".to_string()),
                untrusted(package),
                untrusted(channel),
                untrusted(range)
            ),
            Note::Added { added, channel, needed_by, requirement } => write!(
                f,
                "added dependency {} from channel {}: needed by {} ({requirement})",
                self::bundle(added),
                untrusted(channel),
                self::bundle(needed_by)
            ),
            Note::Joined { package, channel, bundle, dependency } => write!(
                f,
                "kept {} of package {} channel {}: it joins dependency {} to the channel's kept head",
                untrusted(bundle),
                untrusted(package),
                untrusted(channel),
                untrusted(dependency)
            ),
            Note::NotAdded { needed_by, requirement, provider: (package, _, name) } => write!(
                f,
                "dependency not added (skipDependencies): {} needs {requirement}, which {} would satisfy",
                self::bundle(needed_by),
                self::bundle(&(package.clone(), name.clone()))
            ),
            Note::Unsatisfied { needed_by, requirement } => write!(
                f,
                "unsatisfiable dependency: {} needs {requirement}, which no bundle of the catalog provides",
                self::bundle(needed_by)
            ),
        }
    }
}
