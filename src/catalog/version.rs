//! Semantic versions (semver 2.0.0) as bundles carry them, and the version ranges of
//! catalogs and image set files.
//!
//! Two range flavours exist, as in OLM and oc-mirror:
//! - [`Range::parse`]: blang/semver ranges (`skipRange`, `olm.package.required`'s
//!   `versionRange`): comparators `>`, `>=`, `<`, `<=`, `=`, `!=` (or a bare version,
//!   meaning `=`) joined by spaces (and), alternatives joined by `||`, `x` wildcards; a
//!   prerelease is compared like any version.
//! - [`Range::between`]: an image set's `minVersion`/`maxVersion`, which oc-mirror hands to
//!   Masterminds/semver as `>=MIN <=MAX`: there a prerelease version never satisfies a
//!   bound that has no prerelease itself (`1.2.0-rc.1` is outside `>=1.0.0`).

use std::cmp::Ordering;
use std::fmt;

/// A semantic version. Ordering is semver precedence; build metadata does not change
/// precedence and only breaks ties (so that equal means identical).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pre: Vec<Ident>,
    build: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Ident {
    // Numeric identifiers have lower precedence than alphanumeric ones: declared first.
    Num(u64),
    Alpha(String),
}

impl Version {
    /// A strict semver version (`1.2.3`, `1.2.3-rc.1+build.5`); a leading `v` is accepted
    /// as OLM accepts it.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.strip_prefix('v').unwrap_or(s);
        let (rest, build) = match s.split_once('+') {
            Some((r, b)) if valid_idents(b, false) => (r, b.to_string()),
            Some(_) => return None,
            None => (s, String::new()),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((c, p)) if valid_idents(p, true) => (c, p.split('.').map(ident).collect()),
            Some(_) => return None,
            None => (rest, Vec::new()),
        };
        let mut parts = core.split('.');
        let (major, minor, patch) = (number(parts.next()?)?, number(parts.next()?)?, number(parts.next()?)?);
        if parts.next().is_some() {
            return None;
        }
        Some(Version { major, minor, patch, pre, build })
    }

    /// A version as people write it in an image set file: `4.14`, `v1`, `1.2.3-rc.1`
    /// (missing minor and patch are 0, as Masterminds/semver reads them).
    pub fn parse_loose(s: &str) -> Option<Version> {
        let t = s.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        let split = t.find(['-', '+']).unwrap_or(t.len());
        let (core, tail) = t.split_at(split);
        let dots = core.matches('.').count();
        let padded = match dots {
            0 => format!("{core}.0.0{tail}"),
            1 => format!("{core}.0{tail}"),
            _ => t.to_string(),
        };
        Version::parse(&padded)
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    fn precedence(&self, other: &Version) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch)).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A prerelease comes before its release.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            }
        })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        self.precedence(other).then_with(|| self.build.cmp(&other.build))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, p) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            match p {
                Ident::Num(n) => write!(f, "{n}")?,
                Ident::Alpha(a) => f.write_str(a)?,
            }
        }
        if !self.build.is_empty() {
            write!(f, "+{}", self.build)?;
        }
        Ok(())
    }
}

fn number(s: &str) -> Option<u64> {
    let leading_zero = s.len() > 1 && s.starts_with('0');
    if s.is_empty() || leading_zero || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn valid_idents(s: &str, prerelease: bool) -> bool {
    s.split('.').all(|id| {
        let charset = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let numeric = id.bytes().all(|b| b.is_ascii_digit());
        charset && !(prerelease && numeric && id.len() > 1 && id.starts_with('0'))
    })
}

fn ident(s: &str) -> Ident {
    match s.parse() {
        Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => Ident::Num(n),
        _ => Ident::Alpha(s.to_string()),
    }
}

/// A version range: alternatives (`||`), each a conjunction of comparators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    text: String,
    alternatives: Vec<Vec<Comparator>>,
    /// Masterminds/semver: a prerelease version satisfies a comparator only if the
    /// comparator's version is a prerelease too.
    prerelease_opt_in: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparator {
    op: Op,
    version: Version,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Range {
    /// A blang/semver range (`>=4.1.0 <4.2.0`, `>=1.0.0 <2.0.0 || >=3.0.0`, `1.2.x`).
    pub fn parse(s: &str) -> Option<Range> {
        let mut alternatives = Vec::new();
        for alt in s.split("||") {
            let mut all = Vec::new();
            let mut words = alt.split_whitespace().peekable();
            while let Some(word) = words.next() {
                // `>= 1.0.0`: an operator written apart from its version.
                let joined;
                let word = if word.bytes().all(|b| b"<>=!".contains(&b)) {
                    joined = format!("{word}{}", words.next()?);
                    joined.as_str()
                } else {
                    word
                };
                all.extend(comparators(word)?);
            }
            if all.is_empty() {
                return None;
            }
            alternatives.push(all);
        }
        Some(Range { text: s.trim().to_string(), alternatives, prerelease_opt_in: false })
    }

    /// `>=MIN <=MAX` as oc-mirror builds it from `minVersion`/`maxVersion` (either may be
    /// absent), with Masterminds/semver's prerelease rule.
    pub fn between(min: Option<&Version>, max: Option<&Version>) -> Range {
        let mut all = Vec::new();
        let mut text = Vec::new();
        if let Some(v) = min {
            all.push(Comparator { op: Op::Ge, version: v.clone() });
            text.push(format!(">={v}"));
        }
        if let Some(v) = max {
            all.push(Comparator { op: Op::Le, version: v.clone() });
            text.push(format!("<={v}"));
        }
        Range { text: text.join(" "), alternatives: vec![all], prerelease_opt_in: true }
    }

    pub fn contains(&self, v: &Version) -> bool {
        self.alternatives.iter().any(|all| all.iter().all(|c| self.satisfies(c, v)))
    }

    fn satisfies(&self, c: &Comparator, v: &Version) -> bool {
        if self.prerelease_opt_in && v.is_prerelease() && !c.version.is_prerelease() {
            return false;
        }
        let ord = v.precedence(&c.version);
        match c.op {
            Op::Eq => ord == Ordering::Equal,
            Op::Ne => ord != Ordering::Equal,
            Op::Gt => ord == Ordering::Greater,
            Op::Ge => ord != Ordering::Less,
            Op::Lt => ord == Ordering::Less,
            Op::Le => ord != Ordering::Greater,
        }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One word of a blang range: an operator and a version, which may end in `.x` wildcards.
fn comparators(word: &str) -> Option<Vec<Comparator>> {
    let split = word.find(|c: char| !"<>=!".contains(c)).unwrap_or(word.len());
    let (op, ver) = word.split_at(split);
    let op = match op {
        "" | "=" | "==" => Op::Eq,
        "!=" | "!" => Op::Ne,
        ">" => Op::Gt,
        ">=" => Op::Ge,
        "<" => Op::Lt,
        "<=" => Op::Le,
        _ => return None,
    };
    let parts: Vec<&str> = ver.split('.').collect();
    let wild = |p: &&str| *p == "x" || *p == "X" || *p == "*";
    let Some(first_wild) = parts.iter().position(wild) else {
        return Some(vec![Comparator { op, version: Version::parse(ver)? }]);
    };
    // `1.2.x`: the lowest version the wildcard covers and the first one past it.
    if first_wild == 0 || parts.len() > 3 || !parts[first_wild..].iter().all(wild) {
        return None;
    }
    let nums: Vec<u64> = parts[..first_wild].iter().map(|p| number(p)).collect::<Option<_>>()?;
    let at = |n: &[u64]| Version { major: n[0], minor: n[1], patch: n[2], pre: Vec::new(), build: String::new() };
    let low = at(&[nums[0], nums.get(1).copied().unwrap_or(0), 0]);
    let high = if nums.len() == 1 { at(&[nums[0] + 1, 0, 0]) } else { at(&[nums[0], nums[1] + 1, 0]) };
    let c = |op, version| Comparator { op, version };
    Some(match op {
        Op::Eq => vec![c(Op::Ge, low), c(Op::Lt, high)],
        Op::Ne => return None,
        Op::Gt => vec![c(Op::Ge, high)],
        Op::Ge => vec![c(Op::Ge, low)],
        Op::Lt => vec![c(Op::Lt, low)],
        Op::Le => vec![c(Op::Lt, high)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn precedence_follows_semver() {
        let order = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.10.0",
            "2.0.0",
        ];
        for pair in order.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        // Build metadata does not change precedence, only breaks the tie.
        assert_eq!(v("1.0.0+a").precedence(&v("1.0.0+b")), Ordering::Equal);
        assert_ne!(v("1.0.0+a"), v("1.0.0+b"));
        assert!(v("1.0.0-1+zzz") < v("1.0.0"));
        assert_eq!(v("v1.2.3-rc.1+build.5").to_string(), "1.2.3-rc.1+build.5");
    }

    #[test]
    fn parse_refuses_what_semver_refuses() {
        for bad in ["1.2", "1.2.3.4", "01.2.3", "1.2.3-01", "1.2.3-", "1.2.3+", "1.2.3-a..b", "a.b.c", ""] {
            assert!(Version::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(Version::parse_loose("4.14"), Some(v("4.14.0")));
        assert_eq!(Version::parse_loose("v1"), Some(v("1.0.0")));
        assert_eq!(Version::parse_loose("1.2-rc.1"), Some(v("1.2.0-rc.1")));
    }

    #[test]
    fn blang_ranges() {
        let r = Range::parse(">=4.1.0 <4.2.0").unwrap();
        assert!(r.contains(&v("4.1.0")) && r.contains(&v("4.1.9")) && !r.contains(&v("4.2.0")));
        // blang compares prereleases like any version.
        assert!(r.contains(&v("4.1.5-rc.1")) && r.contains(&v("4.2.0-rc.1")));
        let alt = Range::parse(">=1.0.0 <2.0.0 || >=3.0.0").unwrap();
        assert!(alt.contains(&v("1.5.0")) && !alt.contains(&v("2.5.0")) && alt.contains(&v("3.1.0")));
        assert!(Range::parse(">= 1.0.0").unwrap().contains(&v("1.0.0")));
        assert!(Range::parse("1.2.3").unwrap().contains(&v("1.2.3+meta")));
        assert!(!Range::parse("!=1.2.3").unwrap().contains(&v("1.2.3")));
        let wild = Range::parse("1.2.x").unwrap();
        assert!(wild.contains(&v("1.2.7")) && !wild.contains(&v("1.3.0")));
        assert!(Range::parse("<=1.x").unwrap().contains(&v("1.9.9")));
        assert!(!Range::parse(">1.2.x").unwrap().contains(&v("1.2.9")));
        for bad in ["", ">=", "~1.0.0", ">=1.0", "1.x.2", ">=1.0.0 ||"] {
            assert!(Range::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(r.to_string(), ">=4.1.0 <4.2.0");
    }

    #[test]
    fn image_set_bounds_leave_out_prereleases() {
        let r = Range::between(Some(&v("1.0.0")), Some(&v("2.0.0")));
        assert!(r.contains(&v("1.0.0")) && r.contains(&v("2.0.0")) && !r.contains(&v("2.0.1")));
        assert!(!r.contains(&v("1.5.0-rc.1")), "Masterminds: no prerelease unless the bound has one");
        let pre = Range::between(Some(&v("1.0.0-0")), None);
        assert!(pre.contains(&v("1.5.0-rc.1")));
        assert_eq!(r.to_string(), ">=1.0.0 <=2.0.0");
        assert!(Range::between(None, None).contains(&v("0.0.1")));
    }
}
