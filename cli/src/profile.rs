//! Profiles: TOML files that set global and command options and describe the jobs `cairn run`
//! runs (README "Operations").
//!
//! A profile's keys are the long names of the command line's own options, checked against the
//! clap definition, so every option is settable and none is spelled twice. Options from a file
//! are handed to clap as if typed before the user's own, except those the user did type: the
//! command line wins over the file, and the file (being arguments) over the environment. Any key
//! that is not an option is an error naming the file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;

/// Keys that are profile structure, not options.
const JOB_KEYS: &[&str] = &["paths", "command", "pg", "before", "after", "on-error", "forget", "drill"];
/// Options a profile cannot set: they choose the profile, or make no sense in a file.
const NOT_IN_FILES: &[&str] = &["config", "profile", "help", "version"];

/// A value of a profile with the line it was written on.
#[derive(Debug, Clone)]
pub struct Item {
    pub line: usize,
    pub value: Value,
}

/// A TOML value, owned.
#[derive(Debug, Clone)]
pub enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Array(Vec<Item>),
    Table(Table),
}

/// The keys of a TOML table in file order, with their lines.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub entries: Vec<(String, Item)>,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Item> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn remove(&mut self, key: &str) -> Option<Item> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }

    /// This table's keys, overridden key by key by `over`'s.
    pub fn overridden_by(&self, over: &Table) -> Table {
        let mut out: Vec<(String, Item)> =
            self.entries.iter().filter(|(k, _)| over.get(k).is_none()).cloned().collect();
        out.extend(over.entries.iter().cloned());
        Table { entries: out }
    }
}

/// Shell commands run (with `sh -c`) before and after a job, or a whole `cairn run`.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub before: Option<String>,
    pub after: Option<String>,
    pub on_error: Option<String>,
}

/// Where a job's data comes from.
#[derive(Debug, Clone)]
pub enum JobSource {
    /// Files and folders.
    Paths(Vec<String>),
    /// A command whose standard output is backed up (as `backup --stdin-from-command`): an array
    /// is the program and its arguments; a string is run by `sh -c`.
    Command(Vec<String>),
    /// A PostgreSQL database backed up as `cairn pg backup` does: `pg = "postgresql://…"` names
    /// it (`Some`), `pg = true` takes it from the `PG*` variables (`None`).
    Pg(Option<String>),
}

/// When and how `cairn run` drills a pg job's newest snapshot (`[jobs.NAME.drill]`).
#[derive(Debug, Clone)]
pub struct Drill {
    /// `every`: the drill runs when the last successful drill of the database is older.
    pub every: (u64, String),
    /// The other keys: options of `cairn pg drill` (`scratch-db`, `check-sql`, `jobs`).
    pub options: Table,
}

/// One job of a profile.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub source: JobSource,
    /// Further `backup` options of this job (over the profile's `[backup]`).
    pub backup: Table,
    /// Retention: `forget` options of this job (over the profile's `[forget]`).
    pub forget: Table,
    pub hooks: Hooks,
    /// The drill schedule of a pg job.
    pub drill: Option<Drill>,
}

/// A loaded, checked profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The file's name without `.toml`: names the profile in records, metrics and hooks.
    pub name: String,
    pub path: PathBuf,
    pub global: Table,
    /// `[backup]`, `[check]`, … : options of each command.
    pub commands: BTreeMap<String, Table>,
    /// Hooks around a whole `cairn run`.
    pub hooks: Hooks,
    pub jobs: Vec<Job>,
    /// `every` of `[prune]` and `[check]`: how often `run` prunes and checks (`None`: never).
    pub prune_every: Option<(u64, String)>,
    pub check_every: Option<(u64, String)>,
}

/// `$XDG_CONFIG_HOME/cairn/NAME.toml` (or `~/.config/cairn/`), then `/etc/cairn/NAME.toml`.
pub fn candidates(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(dir) = config_home {
        out.push(dir.join("cairn").join(format!("{name}.toml")));
    }
    out.push(PathBuf::from("/etc/cairn").join(format!("{name}.toml")));
    out
}

/// Finds the profile named `name`.
pub fn find(name: &str) -> Result<PathBuf> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        bail!("profile name '{name}' is not a plain name (give a file with --config FILE)");
    }
    let tried = candidates(name);
    tried.iter().find(|p| p.is_file()).cloned().with_context(|| {
        let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
        format!("no profile '{name}': none of {} exists (or give a file with --config FILE)", list.join(", "))
    })
}

/// An error about the file at `line`.
fn at(path: &Path, line: usize, message: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{}:{line}: {message}", path.display())
}

/// Line (1-based) of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

fn convert(text: &str, path: &Path, v: &toml::Spanned<toml::de::DeValue<'_>>) -> Result<Item> {
    use toml::de::DeValue;
    let line = line_of(text, v.span().start);
    let value = match v.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => Value::Integer(
            i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| at(path, line, "integer out of range"))?,
        ),
        DeValue::Float(f) => Value::Float(f.as_str().parse().map_err(|_| at(path, line, "not a number"))?),
        DeValue::Boolean(b) => Value::Boolean(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(a) => Value::Array(a.iter().map(|e| convert(text, path, e)).collect::<Result<_>>()?),
        DeValue::Table(t) => Value::Table(convert_table(text, path, t)?),
    };
    Ok(Item { line, value })
}

fn convert_table(text: &str, path: &Path, t: &toml::de::DeTable<'_>) -> Result<Table> {
    let mut entries = Vec::new();
    for (k, v) in t.iter() {
        let mut item = convert(text, path, v)?;
        // A table's line is its key's (its `[header]`), not that of its first value.
        item.line = line_of(text, k.span().start);
        entries.push((k.get_ref().to_string(), item));
    }
    entries.sort_by_key(|(_, item)| item.line);
    Ok(Table { entries })
}

fn string(path: &Path, key: &str, item: &Item) -> Result<String> {
    match &item.value {
        Value::String(s) => Ok(s.clone()),
        _ => Err(at(path, item.line, format!("'{key}' must be a string"))),
    }
}

fn strings(path: &Path, key: &str, item: &Item) -> Result<Vec<String>> {
    match &item.value {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|e| string(path, key, e)).collect(),
        _ => Err(at(path, item.line, format!("'{key}' must be a string or an array of strings"))),
    }
}

fn table(path: &Path, key: &str, item: Item) -> Result<Table> {
    match item.value {
        Value::Table(t) => Ok(t),
        _ => Err(at(path, item.line, format!("'{key}' must be a table ([{key}])"))),
    }
}

fn hooks(path: &Path, t: &mut Table) -> Result<Hooks> {
    let mut take = |k: &str| t.remove(k).map(|i| string(path, k, &i)).transpose();
    Ok(Hooks { before: take("before")?, after: take("after")?, on_error: take("on-error")? })
}

/// Accepts `on_error` for `on-error` and `keep_daily` for `keep-daily`, as borgmatic's files spell them.
fn normalise(t: &mut Table) {
    for (k, _) in &mut t.entries {
        *k = k.replace('_', "-");
    }
}

/// Reads and checks the profile at `path` against the command line's definition `cli`.
pub fn load(path: &Path, cli: &clap::Command) -> Result<Profile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading profile {}", path.display()))?;
    let parsed = toml::de::DeTable::parse(&text).map_err(|e| {
        let line = e.span().map(|s| line_of(&text, s.start)).unwrap_or(1);
        at(path, line, e.message().trim_end())
    })?;
    let mut root = convert_table(&text, path, parsed.get_ref())?;
    normalise(&mut root);
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let hooks = hooks(path, &mut root)?;
    let mut profile = Profile {
        name,
        path: path.to_owned(),
        global: Table::default(),
        commands: BTreeMap::new(),
        hooks,
        jobs: Vec::new(),
        prune_every: None,
        check_every: None,
    };
    for (key, item) in root.entries {
        match key.as_str() {
            "global" => {
                let mut t = table(path, &key, item)?;
                normalise(&mut t);
                check_options(path, "[global]", &t, cli, true)?;
                profile.global = t;
            }
            "jobs" => {
                for (job, item) in table(path, &key, item)?.entries {
                    profile.jobs.push(load_job(path, cli, job, item)?);
                }
            }
            command => {
                let Some(sub) = cli.find_subcommand(command) else {
                    return Err(at(
                        path,
                        item.line,
                        format!(
                            "unknown key '{command}' (expected before, after, on-error, [global], [jobs.NAME] or a command such as [backup])"
                        ),
                    ));
                };
                if sub.has_subcommands() {
                    return Err(at(path, item.line, format!("[{command}]: a command with subcommands takes no table")));
                }
                let mut t = table(path, command, item)?;
                normalise(&mut t);
                if matches!(command, "prune" | "check")
                    && let Some(every) = t.remove("every")
                {
                    let text = string(path, "every", &every)?;
                    let secs = cairn_engine::commands::status::parse_age(&text)
                        .map_err(|e| at(path, every.line, format!("'every': {e}")))?;
                    if command == "prune" {
                        profile.prune_every = Some((secs, text));
                    } else {
                        profile.check_every = Some((secs, text));
                    }
                }
                check_options(path, &format!("[{command}]"), &t, sub, false)?;
                profile.commands.insert(command.to_owned(), t);
            }
        }
    }
    Ok(profile)
}

fn load_job(path: &Path, cli: &clap::Command, name: String, item: Item) -> Result<Job> {
    let line = item.line;
    let mut t = table(path, &format!("jobs.{name}"), item)?;
    normalise(&mut t);
    let hooks = hooks(path, &mut t)?;
    let paths = t.remove("paths").map(|i| strings(path, "paths", &i)).transpose()?;
    let command = match t.remove("command") {
        None => None,
        Some(i) => match &i.value {
            Value::String(s) => Some(vec!["sh".to_owned(), "-c".to_owned(), s.clone()]),
            _ => Some(strings(path, "command", &i)?),
        },
    };
    let pg = match t.remove("pg") {
        None => None,
        Some(i) => match &i.value {
            Value::String(s) if !s.is_empty() => Some(Some(s.clone())),
            Value::Boolean(true) => Some(None),
            _ => {
                return Err(at(
                    path,
                    i.line,
                    format!("[jobs.{name}]: 'pg' must be a database URL or true (the PG* variables)"),
                ));
            }
        },
    };
    let source = match (paths, command, pg) {
        (Some(p), None, None) if !p.is_empty() => JobSource::Paths(p),
        (None, Some(c), None) if !c.is_empty() => JobSource::Command(c),
        (None, None, Some(db)) => JobSource::Pg(db),
        (None, None, None) => {
            return Err(at(
                path,
                line,
                format!("[jobs.{name}]: give 'paths' (folders), 'command' (a dump command) or 'pg' (a database)"),
            ));
        }
        (Some(_), None, None) | (None, Some(_), None) => {
            return Err(at(path, line, format!("[jobs.{name}]: 'paths' or 'command' is empty")));
        }
        _ => {
            return Err(at(path, line, format!("[jobs.{name}]: give one of 'paths', 'command' or 'pg'")));
        }
    };
    let mut forget = match t.remove("forget") {
        Some(i) => table(path, &format!("jobs.{name}.forget"), i)?,
        None => Table::default(),
    };
    normalise(&mut forget);
    let forget_cmd = cli.find_subcommand("forget").expect("forget is a command");
    check_options(path, &format!("[jobs.{name}.forget]"), &forget, forget_cmd, false)?;
    let drill = match t.remove("drill") {
        None => None,
        Some(i) => {
            let JobSource::Pg(_) = source else {
                return Err(at(path, i.line, format!("[jobs.{name}]: 'drill' is for pg jobs only")));
            };
            let mut d = table(path, &format!("jobs.{name}.drill"), i)?;
            normalise(&mut d);
            let every = d
                .remove("every")
                .ok_or_else(|| at(path, line, format!("[jobs.{name}.drill]: give 'every' (e.g. every = \"7d\")")))?;
            let text = string(path, "every", &every)?;
            let secs = cairn_engine::commands::status::parse_age(&text)
                .map_err(|e| at(path, every.line, format!("'every': {e}")))?;
            let drill_cmd = pg_command(cli, "drill");
            check_options(path, &format!("[jobs.{name}.drill]"), &d, drill_cmd, false)?;
            Some(Drill { every: (secs, text), options: d })
        }
    };
    if let JobSource::Pg(_) = source {
        if let Some((_, i)) = t.entries.iter().find(|(k, _)| k == "db") {
            return Err(at(path, i.line, format!("[jobs.{name}]: the database is given by 'pg'")));
        }
        check_options(path, &format!("[jobs.{name}]"), &t, pg_command(cli, "backup"), false).map_err(|e| {
            anyhow::anyhow!("{e} (a pg job takes {} and the options of 'cairn pg backup')", JOB_KEYS.join(", "))
        })?;
        return Ok(Job { name, source, backup: t, forget, hooks, drill });
    }
    let backup_cmd = cli.find_subcommand("backup").expect("backup is a command");
    for (k, i) in &t.entries {
        if matches!(k.as_str(), "stdin" | "stdin-from-command" | "dry-run") {
            return Err(at(path, i.line, format!("[jobs.{name}]: '{k}' is chosen by the job's 'paths' or 'command'")));
        }
    }
    check_options(path, &format!("[jobs.{name}]"), &t, backup_cmd, false)
        .map_err(|e| anyhow::anyhow!("{e} (a job takes {} and the options of 'cairn backup')", JOB_KEYS.join(", ")))?;
    Ok(Job { name, source, backup: t, forget, hooks, drill })
}

/// `cairn pg NAME`'s definition.
pub fn pg_command<'c>(cli: &'c clap::Command, name: &str) -> &'c clap::Command {
    cli.find_subcommand("pg").and_then(|pg| pg.find_subcommand(name)).expect("pg backup and pg drill are commands")
}

/// The option of `cmd` whose long name is `key`.
fn option<'c>(cmd: &'c clap::Command, key: &str) -> Option<&'c clap::Arg> {
    cmd.get_arguments().find(|a| a.get_long() == Some(key) && !NOT_IN_FILES.contains(&key))
}

/// Every key must be an option of `cmd` (a global one in `[global]`, the command's own elsewhere)
/// and its value of a shape the option takes.
fn check_options(path: &Path, table: &str, t: &Table, cmd: &clap::Command, global: bool) -> Result<()> {
    for (key, item) in &t.entries {
        let Some(arg) = option(cmd, key) else {
            let what =
                if global { "a global option".to_owned() } else { format!("an option of 'cairn {}'", cmd.get_name()) };
            return Err(at(path, item.line, format!("unknown key '{key}' in {table}: not {what}")));
        };
        if arg.is_global_set() != global {
            let hint = if global { "belongs to a command's table" } else { "is a global option: put it in [global]" };
            return Err(at(path, item.line, format!("'{key}' in {table} {hint}")));
        }
        to_args(path, key, arg, item)?;
    }
    Ok(())
}

/// The command-line arguments that say what `item` says for `arg`.
fn to_args(path: &Path, key: &str, arg: &clap::Arg, item: &Item) -> Result<Vec<String>> {
    let takes_value = arg.get_action().takes_values();
    let counted = matches!(arg.get_action(), clap::ArgAction::Count);
    let repeatable = matches!(arg.get_action(), clap::ArgAction::Append) || counted;
    let one = |item: &Item| -> Result<Vec<String>> {
        Ok(match (&item.value, takes_value) {
            (Value::Boolean(true), false) => vec![format!("--{key}")],
            (Value::Boolean(false), false) => Vec::new(),
            (Value::Integer(n), false) if counted && *n >= 0 => vec![format!("--{key}"); *n as usize],
            (Value::String(s), true) => vec![format!("--{key}={s}")],
            (Value::Integer(n), true) => vec![format!("--{key}={n}")],
            (Value::Float(f), true) => vec![format!("--{key}={f}")],
            (Value::Boolean(b), true) => vec![format!("--{key}={b}")],
            (_, false) => return Err(at(path, item.line, format!("'{key}' is a switch: use true or false"))),
            (_, true) => return Err(at(path, item.line, format!("'{key}' takes a string or a number"))),
        })
    };
    match &item.value {
        Value::Array(items) if repeatable && takes_value => {
            let mut out = Vec::new();
            for i in items {
                out.extend(one(i)?);
            }
            Ok(out)
        }
        Value::Array(_) => Err(at(path, item.line, format!("'{key}' takes one value, not an array"))),
        Value::Table(_) => Err(at(path, item.line, format!("'{key}' takes a value, not a table"))),
        _ => one(item),
    }
}

/// The arguments for the keys of `t` as options of `cmd`, leaving out those the command line set
/// (`typed` says which ids it set). Each comes with its line, to name it when clap refuses it.
pub fn args_for(
    profile: &Profile,
    t: &Table,
    cmd: &clap::Command,
    typed: &dyn Fn(&str) -> bool,
) -> Result<Vec<(usize, Vec<String>)>> {
    let mut out = Vec::new();
    for (key, item) in &t.entries {
        let arg = option(cmd, key).with_context(|| format!("{}: '{key}' is not an option", profile.path.display()))?;
        if typed(arg.get_id().as_str()) {
            continue;
        }
        out.push((item.line, to_args(&profile.path, key, arg, item)?));
    }
    Ok(out)
}

/// Whether the command line itself (not the environment or a default) set the option `id`.
pub fn typed_in(matches: &clap::ArgMatches, id: &str) -> bool {
    matches.try_get_raw(id).ok().flatten().is_some() && matches.value_source(id) == Some(ValueSource::CommandLine)
}
