//! What every command that works on the workspace starts from, built once in `main`: a shell in
//! the workspace root and the workspace `cargo metadata` describes. Settings are resolved per
//! command, because each command has its own overriding flags.

use anyhow::Result;
use xshell::Shell;

use crate::workspace::config::{self, Config, Overrides};
use crate::workspace::git::Git;
use crate::workspace::Workspace;

pub struct Context {
    /// A shell whose directory is the workspace root, so every program runs there.
    pub sh: Shell,
    pub workspace: Workspace,
}

impl Context {
    /// The context of the workspace the current directory belongs to (`Workspace::load`).
    pub fn new(workspace: Workspace) -> Result<Context> {
        let sh = Shell::new()?;
        sh.change_dir(&workspace.root);
        let context = Context { sh, workspace };
        // Whatever the command, what it runs (cargo, build scripts, docker) never sees cosign's
        // password or, unless the configuration lets them through, the AWS credentials, which
        // the xtask itself still reads. `release` hides the signing key's variable too.
        let aws_in_builds = context
            .config(Overrides { repository: None, platforms: &[] })
            .is_ok_and(|config| config.supply_chain.aws_credentials_in_builds);
        context.hide_from_children(&config::secrets_kept_from_builds(aws_in_builds));
        Ok(context)
    }

    /// `[workspace.metadata.xtask]` < `XTASK_*` variables < `overrides`; a local layout
    /// repository is taken relative to the workspace root, wherever the command runs.
    pub fn config(&self, overrides: Overrides<'_>) -> Result<Config> {
        let config = config::resolve(&self.workspace.metadata, &|key| std::env::var(key).ok(), overrides)?;
        Ok(config.rooted_at(&self.workspace.root))
    }

    pub fn git(&self) -> Result<Git<'_>> {
        Git::open(&self.sh, &self.workspace.root)
    }

    /// Keeps the values of the variables `names` from every program the xtask runs through its
    /// shell from now on (cargo, build scripts, proc macros, docker), while the xtask itself still
    /// reads them: a compromised dependency's build script must not copy a signing key or cloud
    /// credentials. (xshell can only set a variable, so those that are set are set empty, which
    /// the tools that read them take for unset.)
    pub fn hide_from_children(&self, names: &[&str]) {
        for name in names.iter().filter(|name| std::env::var_os(name).is_some()) {
            self.sh.set_var(name, "");
        }
    }

    /// The names of the workspace's apps, in name order.
    pub fn app_names(&self) -> Vec<String> {
        self.workspace.apps().map(|app| app.name.clone()).collect()
    }
}
