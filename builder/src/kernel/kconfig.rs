//! Just enough of Kconfig to say why `make olddefconfig` dropped a symbol:
//! each `config` entry's `depends on` (with the conditions of the `if`,
//! `menu` and `choice` blocks around it, across `source` statements, as
//! scripts/kconfig/menu.c propagates them), whether it has a prompt, and
//! which entries `select` it.
//!
//! Hand-written because no maintained Rust crate parses the kernel's Kconfig
//! language (the `kconfig` parsers on crates.io are unmaintained or target
//! Zephyr's dialect), and kina needs only this reading of it; the kernel's
//! own scripts/kconfig decides the configuration, this only explains it.
//! The expression evaluator follows scripts/kconfig/expr.c's tristate
//! logic: `n`=0, `m`=1, `y`=2, `&&` is min, `||` max, `!` is 2-x.

use std::collections::BTreeMap;
use std::path::Path;

use crate::platform::Arch;

/// One definition of a symbol (a symbol may be defined in several files).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Definition {
    /// The Kconfig file, relative to the source tree.
    pub file: String,
    /// Every condition the entry depends on, its own `depends on` lines
    /// and those of the blocks around it, one expression each.
    pub depends: Vec<String>,
    /// It has a prompt: a user (or a config fragment) can set it. Without
    /// one it is set only by `select` or its default.
    pub has_prompt: bool,
}

/// The Kconfig entries of a source tree for one architecture.
#[derive(Clone, Debug, Default)]
pub struct KconfigIndex {
    pub definitions: BTreeMap<String, Vec<Definition>>,
    /// Symbol → the entries that `select` it (with their `if` condition).
    pub selected_by: BTreeMap<String, Vec<String>>,
}

/// The kernel's name for an architecture's directory (`SRCARCH`).
pub fn srcarch(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86",
        Arch::Arm64 => "arm64",
    }
}

/// What `make ARCH=…` takes.
pub fn kernel_arch(arch: Arch) -> &'static str {
    match arch {
        Arch::Amd64 => "x86_64",
        Arch::Arm64 => "arm64",
    }
}

impl KconfigIndex {
    /// Reads `<srctree>/Kconfig` and everything it sources for `arch`.
    pub fn read(srctree: &Path, arch: Arch) -> std::io::Result<Self> {
        let mut index = Self::default();
        let mut reader = Reader {
            srctree,
            arch,
            index: &mut index,
        };
        reader.file(&srctree.join("Kconfig"), &[])?;
        Ok(index)
    }

    /// Why `symbol` is not `=y` in `config` (values as `.config` holds them,
    /// without `CONFIG_`): the conditions that are not met, or what else
    /// keeps it unset. Empty when Kconfig sees nothing against it.
    pub fn unmet(&self, symbol: &str, config: &BTreeMap<String, String>) -> Vec<String> {
        let Some(definitions) = self.definitions.get(symbol) else {
            return vec![format!(
                "no Kconfig entry defines {symbol} in this source tree for this architecture"
            )];
        };
        let mut out = Vec::new();
        for def in definitions {
            for expr in &def.depends {
                for term in split_top(expr, "&&") {
                    if eval(&term, config) < 2 {
                        out.push(describe(&term, config));
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        if out.is_empty() && !definitions.iter().any(|d| d.has_prompt) {
            let selectors = self.selected_by.get(symbol).cloned().unwrap_or_default();
            out.push(if selectors.is_empty() {
                format!("{symbol} has no prompt and nothing selects it")
            } else {
                format!(
                    "{symbol} has no prompt: only `select` sets it, from {}",
                    selectors.join(", ")
                )
            });
        }
        out
    }
}

/// `TERM` with the values of the symbols it names: `MODULES (not set)`.
fn describe(term: &str, config: &BTreeMap<String, String>) -> String {
    let symbols: Vec<String> = tokens(term)
        .into_iter()
        .filter(|t| is_symbol(t))
        .map(|s| match config.get(&s).map(String::as_str) {
            None | Some("n") => format!("CONFIG_{s} is not set"),
            Some(v) => format!("CONFIG_{s}={v}"),
        })
        .collect();
    if symbols.is_empty() {
        term.to_string()
    } else {
        format!("{term} ({})", symbols.join(", "))
    }
}

struct Reader<'a> {
    srctree: &'a Path,
    arch: Arch,
    index: &'a mut KconfigIndex,
}

/// What the property lines that follow belong to.
enum Current {
    None,
    Entry(String, usize),
    Block,
}

impl Reader<'_> {
    fn file(&mut self, path: &Path, inherited: &[String]) -> std::io::Result<()> {
        let text = std::fs::read_to_string(path)?;
        let rel = path
            .strip_prefix(self.srctree)
            .unwrap_or(path)
            .display()
            .to_string();
        let lines = logical_lines(&text);
        // Block conditions: each frame holds the conditions it adds.
        let mut frames: Vec<Vec<String>> = Vec::new();
        let mut current = Current::None;
        let mut help_indent: Option<usize> = None;
        let stack = |frames: &Vec<Vec<String>>| -> Vec<String> {
            inherited
                .iter()
                .cloned()
                .chain(frames.iter().flatten().cloned())
                .collect()
        };
        for line in lines {
            let indent = line.len() - line.trim_start().len();
            let trimmed = line.trim();
            if let Some(h) = help_indent {
                if trimmed.is_empty() || indent > h {
                    continue;
                }
                help_indent = None;
            }
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (word, rest) = trimmed
                .split_once(char::is_whitespace)
                .map_or((trimmed, ""), |(w, r)| (w, r.trim()));
            match word {
                "config" | "menuconfig" => {
                    let defs = self.index.definitions.entry(rest.to_string()).or_default();
                    defs.push(Definition {
                        file: rel.clone(),
                        depends: stack(&frames),
                        has_prompt: false,
                    });
                    current = Current::Entry(rest.to_string(), defs.len() - 1);
                }
                "if" => {
                    frames.push(vec![strip_comment(rest)]);
                    current = Current::None;
                }
                "menu" | "choice" => {
                    frames.push(Vec::new());
                    current = Current::Block;
                }
                "endif" | "endmenu" | "endchoice" => {
                    frames.pop();
                    current = Current::None;
                }
                "comment" | "mainmenu" => current = Current::None,
                "source" | "osource" | "rsource" | "orsource" => {
                    current = Current::None;
                    let name = rest.trim_matches('"');
                    let name = name
                        .replace("$(SRCARCH)", srcarch(self.arch))
                        .replace("$(ARCH)", kernel_arch(self.arch))
                        .replace("$(srctree)/", "");
                    if name.contains("$(") {
                        continue;
                    }
                    let target = if word.starts_with('r') || word.starts_with("or") {
                        path.parent().unwrap_or(self.srctree).join(&name)
                    } else {
                        self.srctree.join(&name)
                    };
                    let optional = word.starts_with('o');
                    if optional && !target.is_file() {
                        continue;
                    }
                    let inherited_here = stack(&frames);
                    self.file(&target, &inherited_here)?;
                }
                "help" | "---help---" => help_indent = Some(indent),
                "depends" => {
                    let expr = strip_comment(rest.trim_start_matches("on").trim());
                    match &current {
                        Current::Entry(name, i) => {
                            if let Some(d) = self
                                .index
                                .definitions
                                .get_mut(name)
                                .and_then(|v| v.get_mut(*i))
                            {
                                d.depends.push(expr);
                            }
                        }
                        Current::Block => {
                            if let Some(frame) = frames.last_mut() {
                                frame.push(expr);
                            }
                        }
                        Current::None => {}
                    }
                }
                "select" => {
                    if let Current::Entry(name, _) = &current {
                        let rest = strip_comment(rest);
                        let (target, cond) = match rest.split_once(" if ") {
                            Some((t, c)) => {
                                (t.trim().to_string(), format!("{name} if {}", c.trim()))
                            }
                            None => (rest.trim().to_string(), name.clone()),
                        };
                        self.index.selected_by.entry(target).or_default().push(cond);
                    }
                }
                "bool" | "tristate" | "string" | "int" | "hex" | "prompt" => {
                    if !rest.is_empty()
                        && rest.starts_with('"')
                        && let Current::Entry(name, i) = &current
                        && let Some(d) = self
                            .index
                            .definitions
                            .get_mut(name)
                            .and_then(|v| v.get_mut(*i))
                    {
                        d.has_prompt = true;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Lines with `\` continuations joined, tabs kept for indentation.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
        } else {
            pending.push_str(line);
            out.push(std::mem::take(&mut pending));
        }
    }
    if !pending.is_empty() {
        out.push(pending);
    }
    out
}

fn strip_comment(s: &str) -> String {
    // `#` inside a quoted string is not a comment.
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return s[..i].trim().to_string(),
            _ => {}
        }
    }
    s.trim().to_string()
}

fn is_symbol(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(token, "y" | "m" | "n")
        && !token.chars().all(|c| c.is_ascii_digit())
}

fn tokens(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != c {
                j += 1;
            }
            out.push(chars[i..(j + 1).min(chars.len())].iter().collect());
            i = j + 1;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            out.push(chars[i..j].iter().collect());
            i = j;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["&&", "||", "!=", "<=", ">="].contains(&two.as_str()) {
                out.push(two);
                i += 2;
            } else {
                out.push(c.to_string());
                i += 1;
            }
        }
    }
    out
}

/// `expr` split at `op` outside parentheses.
fn split_top(expr: &str, op: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut part = Vec::new();
    for t in tokens(expr) {
        match t.as_str() {
            "(" => depth += 1,
            ")" => depth -= 1,
            _ => {}
        }
        if depth == 0 && t == op {
            parts.push(part.join(" "));
            part.clear();
        } else {
            part.push(t);
        }
    }
    if !part.is_empty() {
        parts.push(part.join(" "));
    }
    parts.into_iter().map(|p| strip_outer_parens(&p)).collect()
}

fn strip_outer_parens(s: &str) -> String {
    let t = s.trim();
    if t.starts_with('(') && t.ends_with(')') {
        let inner = &t[1..t.len() - 1];
        let mut depth = 0i32;
        for c in inner.chars() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth < 0 {
                        return t.to_string();
                    }
                }
                _ => {}
            }
        }
        if depth == 0 {
            return strip_outer_parens(inner);
        }
    }
    t.to_string()
}

/// The tristate value (0, 1, 2) of a Kconfig expression against `.config` values.
pub fn eval(expr: &str, config: &BTreeMap<String, String>) -> u8 {
    let tokens = tokens(expr);
    let mut pos = 0;
    Evaluator {
        tokens: &tokens,
        config,
    }
    .or(&mut pos)
}

struct Evaluator<'a> {
    tokens: &'a [String],
    config: &'a BTreeMap<String, String>,
}

impl Evaluator<'_> {
    fn peek(&self, pos: usize) -> Option<&str> {
        self.tokens.get(pos).map(String::as_str)
    }

    fn or(&self, pos: &mut usize) -> u8 {
        let mut v = self.and(pos);
        while self.peek(*pos) == Some("||") {
            *pos += 1;
            v = v.max(self.and(pos));
        }
        v
    }

    fn and(&self, pos: &mut usize) -> u8 {
        let mut v = self.not(pos);
        while self.peek(*pos) == Some("&&") {
            *pos += 1;
            v = v.min(self.not(pos));
        }
        v
    }

    fn not(&self, pos: &mut usize) -> u8 {
        if self.peek(*pos) == Some("!") {
            *pos += 1;
            return 2 - self.not(pos);
        }
        self.comparison(pos)
    }

    fn comparison(&self, pos: &mut usize) -> u8 {
        if self.peek(*pos) == Some("(") {
            *pos += 1;
            let v = self.or(pos);
            if self.peek(*pos) == Some(")") {
                *pos += 1;
            }
            return v;
        }
        let Some(left) = self.peek(*pos).map(str::to_string) else {
            return 0;
        };
        *pos += 1;
        match self.peek(*pos) {
            Some(op @ ("=" | "!=" | "<" | ">" | "<=" | ">=")) => {
                let op = op.to_string();
                *pos += 1;
                let right = self.peek(*pos).map(str::to_string).unwrap_or_default();
                *pos += 1;
                let (l, r) = (self.string(&left), self.string(&right));
                let ordering = match (l.parse::<i64>(), r.parse::<i64>()) {
                    (Ok(a), Ok(b)) => a.cmp(&b),
                    _ => l.cmp(&r),
                };
                let holds = match op.as_str() {
                    "=" => ordering.is_eq(),
                    "!=" => !ordering.is_eq(),
                    "<" => ordering.is_lt(),
                    ">" => ordering.is_gt(),
                    "<=" => ordering.is_le(),
                    _ => ordering.is_ge(),
                };
                if holds { 2 } else { 0 }
            }
            _ => match self.string(&left).as_str() {
                "y" => 2,
                "m" => 1,
                _ => 0,
            },
        }
    }

    /// A token's value as a string: a constant, or a symbol's `.config` value.
    fn string(&self, token: &str) -> String {
        if let Some(s) = token
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .or_else(|| token.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')))
        {
            return s.to_string();
        }
        if !is_symbol(token) {
            return token.to_string();
        }
        self.config
            .get(token)
            .map_or("n".to_string(), |v| v.trim_matches('"').to_string())
    }
}

/// `.config` values by symbol (without `CONFIG_`), `# ... is not set` as `n`.
pub fn read_config_values(text: &str) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line
            .strip_prefix("# CONFIG_")
            .and_then(|r| r.strip_suffix(" is not set"))
        {
            values.insert(name.to_string(), "n".to_string());
        } else if let Some((name, value)) =
            line.strip_prefix("CONFIG_").and_then(|r| r.split_once('='))
        {
            values.insert(name.to_string(), value.to_string());
        }
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tristate_logic_follows_kconfig() {
        let c = values(&[("A", "y"), ("B", "m"), ("S", "\"x\""), ("N", "32")]);
        assert_eq!(eval("A && B", &c), 1);
        assert_eq!(eval("A && !C", &c), 2);
        assert_eq!(eval("C || B", &c), 1);
        assert_eq!(eval("!(A || C)", &c), 0);
        assert_eq!(eval("S = \"x\"", &c), 2);
        assert_eq!(eval("C != y", &c), 2);
        assert_eq!(eval("N >= 16", &c), 2);
    }

    #[test]
    fn block_conditions_reach_entries_across_source_statements() {
        let tree = tempfile::tempdir().unwrap();
        let root = tree.path();
        std::fs::create_dir_all(root.join("arch/arm64")).unwrap();
        std::fs::create_dir_all(root.join("kernel")).unwrap();
        std::fs::write(
            root.join("Kconfig"),
            "mainmenu \"Linux\"\nsource \"arch/$(SRCARCH)/Kconfig\"\nmenuconfig MODULES\n\tbool \"Modules\"\n\thelp\n\t  config NOT_AN_ENTRY\n\nif MODULES\nsource \"kernel/Kconfig\"\nendif # MODULES\nmenu \"Net\"\n\tdepends on NET\nconfig VXLAN\n\ttristate \"vxlan\"\n\tdepends on INET && \\\n\t  IPV6 || !IPV6\nendmenu\nconfig BPF\n\tbool\nconfig BPF_SYSCALL\n\tbool \"bpf\"\n\tselect BPF\n",
        )
        .unwrap();
        std::fs::write(
            root.join("arch/arm64/Kconfig"),
            "config ARM64\n\tdef_bool y\n",
        )
        .unwrap();
        std::fs::write(
            root.join("kernel/Kconfig"),
            "config MODULE_UNLOAD\n\tbool \"unload\"\n\tdepends on !LOCKDOWN # comment\n",
        )
        .unwrap();
        let index = KconfigIndex::read(root, Arch::Arm64).unwrap();
        assert!(!index.definitions.contains_key("NOT_AN_ENTRY"));
        assert_eq!(
            index.definitions["MODULE_UNLOAD"][0].depends,
            vec!["MODULES".to_string(), "!LOCKDOWN".to_string()]
        );
        let c = values(&[("MODULES", "n"), ("ARM64", "y")]);
        assert_eq!(
            index.unmet("MODULE_UNLOAD", &c),
            vec!["MODULES (CONFIG_MODULES is not set)".to_string()]
        );
        let vxlan = index.unmet("VXLAN", &c);
        assert!(
            vxlan.iter().any(|t| t.starts_with("NET ("))
                && vxlan.iter().any(|t| t.starts_with("INET")),
            "{vxlan:?}"
        );
        assert!(
            index.unmet("BPF", &c)[0].contains("BPF_SYSCALL"),
            "{:?}",
            index.unmet("BPF", &c)
        );
        assert!(index.unmet("X86_64", &c)[0].contains("no Kconfig entry"));
    }
}
