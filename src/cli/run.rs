//! Carries out the verbs against the API server: connect the kubectl way (kubeconfig, context,
//! namespace), read Apps, ReplicaSets and Events, write the merge patches [`patch`] builds, and
//! watch an App for `status` and `get --watch`. Every decision is delegated to the pure modules;
//! this module must never write `status` or server-side apply anything.

use std::io::IsTerminal as _;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Api, Client, Config};
use serde_json::Value;

use super::args::{Cli, Command, GetWhat, Global, ImportWhat, Output, SetWhat, StatusArgs};
use super::patch::{self, Control, FIELD_MANAGER};
use super::status::{self, Verdict};
use super::view::{self, Style};
use super::{Failure, exit, history, import, lint};
use crate::api::App;
use crate::controllers::app::build::APP_LABEL;

/// Runs one parsed command; returns the exit code.
pub async fn run(cli: Cli) -> Result<u8, Failure> {
    let g = cli.global;
    match cli.command {
        Command::Lint { files } => Ok(lint::run(&files)),
        Command::Import { what: ImportWhat::AppSpec { file } } => {
            import_app_spec(&file, g.namespace.as_deref())
        }
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "kubectl-authentify", &mut std::io::stdout());
            Ok(exit::OK)
        }
        Command::Get { what: GetWhat::App { name, watch, output } } => {
            let (client, ns) = connect(&g).await?;
            get_app(&client, &ns, &name, watch, output).await
        }
        Command::Status(args) => {
            let (client, ns) = connect(&g).await?;
            wait_status(&client, &ns, &args).await
        }
        Command::Set { what: SetWhat::Image { name, image } } => {
            let image = patch::parse_image_arg(&image).map_err(Failure::usage)?;
            let (client, ns) = connect(&g).await?;
            write(&client, &ns, &name, &patch::set_image(&image)).await?;
            println!(
                "App {ns}/{name}: image set to {image}; the rollout starts now (watch it with `kubectl authentify status {name}`)."
            );
            Ok(exit::OK)
        }
        Command::Promote { name, full } => {
            let kind = if full { Control::PromoteFull } else { Control::Promote };
            control(&g, &name, kind, if full { "full promotion requested" } else { "promotion requested" })
                .await
        }
        Command::Abort { name } => control(&g, &name, Control::Abort, "abort requested").await,
        Command::Retry { name } => control(&g, &name, Control::Retry, "retry requested").await,
        Command::Pause { name } => {
            let (client, ns) = connect(&g).await?;
            write(&client, &ns, &name, &patch::paused(true)).await?;
            println!("App {ns}/{name} paused; `kubectl authentify resume {name}` continues.");
            Ok(exit::OK)
        }
        Command::Resume { name } => {
            let (client, ns) = connect(&g).await?;
            write(&client, &ns, &name, &patch::paused(false)).await?;
            println!("App {ns}/{name} resumed.");
            Ok(exit::OK)
        }
        Command::Restart { name } => {
            let (client, ns) = connect(&g).await?;
            write(&client, &ns, &name, &patch::restart(Timestamp::now())).await?;
            println!("App {ns}/{name}: restart requested; its pods are replaced one at a time.");
            Ok(exit::OK)
        }
        Command::Undo { name, to_revision } => {
            let (client, ns) = connect(&g).await?;
            undo(&client, &ns, &name, to_revision).await
        }
        Command::History { name } => {
            let (client, ns) = connect(&g).await?;
            let app = get(&client, &ns, &name).await?;
            let sets = replica_sets(&client, &ns, &name).await?;
            print!("{}", history::render(&app, &history::entries(&app, &sets)));
            Ok(exit::OK)
        }
        Command::List { all_namespaces, output } => {
            let (client, ns) = connect(&g).await?;
            let api: Api<App> = if all_namespaces { Api::all(client) } else { Api::namespaced(client, &ns) };
            let mut apps = api.list(&ListParams::default()).await.map_err(|e| api_error(e, &ns, None))?.items;
            apps.sort_by(|a, b| {
                (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
            });
            match output {
                Output::Text => {
                    if apps.is_empty() {
                        eprintln!(
                            "No Apps found{}.",
                            if all_namespaces { String::new() } else { format!(" in namespace {ns}") }
                        );
                    } else {
                        print!("{}", view::render_list(&apps, all_namespaces, Timestamp::now(), style()));
                    }
                }
                other => print_list(
                    &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": apps}),
                    other,
                )?,
            }
            Ok(exit::OK)
        }
    }
}

fn style() -> Style {
    Style { colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() }
}

/// Connects as kubectl would; returns the client and the namespace to use.
async fn connect(g: &Global) -> Result<(Client, String), Failure> {
    let options = KubeConfigOptions { context: g.context.clone(), ..KubeConfigOptions::default() };
    let config = if let Some(path) = &g.kubeconfig {
        let kc = Kubeconfig::read_from(path)
            .map_err(|e| Failure::usage(format!("cannot read the kubeconfig {}: {e}", path.display())))?;
        Config::from_custom_kubeconfig(kc, &options)
            .await
            .map_err(|e| Failure::usage(format!("cannot use the kubeconfig {}: {e}", path.display())))?
    } else if g.context.is_some() {
        Config::from_kubeconfig(&options).await.map_err(|e| {
            Failure::usage(format!("cannot use the kubeconfig (KUBECONFIG or ~/.kube/config): {e}"))
        })?
    } else {
        Config::infer().await.map_err(|e| {
            Failure::usage(format!("no cluster to talk to: set KUBECONFIG or pass --kubeconfig ({e})"))
        })?
    };
    let namespace = g.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config)
        .map_err(|e| Failure::usage(format!("cannot build a client for the cluster: {e}")))?;
    Ok((client, namespace))
}

/// Turns an API error into a sentence and exit code 3.
fn api_error(e: kube::Error, ns: &str, name: Option<&str>) -> Failure {
    match (&e, name) {
        (kube::Error::Api(status), Some(name)) if status.code == 404 => Failure::usage(format!(
            "App {name} not found in namespace {ns}; `kubectl authentify list -n {ns}` shows the Apps there"
        )),
        (kube::Error::Api(status), _) if status.code == 403 || status.code == 401 => Failure::usage(format!(
            "the API server refused the request ({}); check your credentials and RBAC for Apps in namespace {ns}",
            status.message
        )),
        (kube::Error::Api(status), _) => {
            Failure::usage(format!("the API server refused the request: {}", status.message))
        }
        _ => Failure::usage(format!("cannot reach the API server: {e}")),
    }
}

async fn get(client: &Client, ns: &str, name: &str) -> Result<App, Failure> {
    Api::<App>::namespaced(client.clone(), ns).get(name).await.map_err(|e| api_error(e, ns, Some(name)))
}

async fn replica_sets(client: &Client, ns: &str, name: &str) -> Result<Vec<ReplicaSet>, Failure> {
    let params = ListParams::default().labels(&format!("{APP_LABEL}={name}"));
    Ok(Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&params)
        .await
        .map_err(|e| api_error(e, ns, None))?
        .items)
}

async fn events(client: &Client, ns: &str, name: &str) -> Result<Vec<Event>, Failure> {
    let params = ListParams::default().fields(&format!("involvedObject.kind=App,involvedObject.name={name}"));
    Ok(Api::<Event>::namespaced(client.clone(), ns)
        .list(&params)
        .await
        .map_err(|e| api_error(e, ns, None))?
        .items)
}

/// Merge-patches the App (which must exist) as the plugin's field manager.
async fn write(client: &Client, ns: &str, name: &str, body: &Value) -> Result<App, Failure> {
    let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PatchParams::default() };
    let api = Api::<App>::namespaced(client.clone(), ns);
    // A merge patch on a missing object fails with 404 too, but check first so the message names it.
    get(client, ns, name).await?;
    api.patch(name, &params, &Patch::Merge(body)).await.map_err(|e| match e {
        kube::Error::Api(ref s) if s.code == 422 => {
            Failure::usage(format!("App {ns}/{name} refused the change: {}", s.message))
        }
        e => api_error(e, ns, Some(name)),
    })
}

async fn control(g: &Global, name: &str, kind: Control, what: &str) -> Result<u8, Failure> {
    let (client, ns) = connect(g).await?;
    write(&client, &ns, name, &patch::control(kind, Timestamp::now())).await?;
    println!("App {ns}/{name}: {what}.");
    Ok(exit::OK)
}

fn print_list(value: &Value, output: Output) -> Result<(), Failure> {
    let text = match output {
        Output::Json => serde_json::to_string_pretty(value).map(|s| s + "\n").map_err(|e| e.to_string()),
        Output::Yaml | Output::Text => serde_yaml_ng::to_string(value).map_err(|e| e.to_string()),
    }
    .map_err(|e| Failure::usage(format!("cannot render the object: {e}")))?;
    print!("{text}");
    Ok(())
}

/// The view of the App now, and a key that changes only when the objects do (not with the clock),
/// so a watch into a file or pipe prints a new view per change rather than per second.
async fn render(client: &Client, ns: &str, app: &App, output: Output) -> Result<(String, String), Failure> {
    if output != Output::Text {
        let mut value = serde_json::to_value(app).map_err(|e| Failure::usage(e.to_string()))?;
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
        let text = match output {
            Output::Json => serde_json::to_string_pretty(&value).map(|s| s + "\n").map_err(|e| e.to_string()),
            _ => serde_yaml_ng::to_string(&value).map(|s| format!("---\n{s}")).map_err(|e| e.to_string()),
        }
        .map_err(|e| {
            Failure::usage(format!(
                "cannot render App {ns}/{}: {e}",
                app.metadata.name.as_deref().unwrap_or_default()
            ))
        })?;
        return Ok((text.clone(), text));
    }
    let name = app.metadata.name.clone().unwrap_or_default();
    let sets = replica_sets(client, ns, &name).await?;
    let events = events(client, ns, &name).await?;
    let text = view::render_app(app, &sets, &events, Timestamp::now(), style());
    let key = view::render_app(app, &sets, &events, Timestamp::UNIX_EPOCH, Style { colour: false });
    Ok((text, key))
}

async fn get_app(client: &Client, ns: &str, name: &str, watch: bool, output: Output) -> Result<u8, Failure> {
    let app = get(client, ns, name).await?;
    if !watch {
        print!("{}", render(client, ns, &app, output).await?.0);
        return Ok(exit::OK);
    }
    let live = std::io::stdout().is_terminal() && output == Output::Text;
    let api = Api::<App>::namespaced(client.clone(), ns);
    let mut stream = watcher::watch_object(api, name).boxed();
    // Re-render on every change of the App, and every second for the pause countdown and new
    // events (ReplicaSets and Events are read again each time).
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut current = app;
    let mut last = String::new();
    loop {
        let (text, key) = render(client, ns, &current, output).await?;
        let changed = if live { text != last } else { key != last };
        if changed {
            if live {
                print!("\x1b[H\x1b[2J{text}");
                last = text;
            } else {
                print!("{text}{}", if output == Output::Text { "\n" } else { "" });
                last = key;
            }
            use std::io::Write as _;
            let _ = std::io::stdout().flush();
        }
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(Some(app))) => current = app,
                Some(Ok(None)) => return Err(Failure::usage(format!("App {name} was deleted from namespace {ns}"))),
                Some(Err(e)) => eprintln!("warning: the watch on App {ns}/{name} failed ({e}); retrying"),
                None => return Ok(exit::OK),
            },
            _ = tick.tick() => {}
        }
    }
}

async fn wait_status(client: &Client, ns: &str, args: &StatusArgs) -> Result<u8, Failure> {
    let timeout = crate::rollout::duration::parse(&args.timeout).ok_or_else(|| {
        Failure::usage(format!(
            "--timeout {} is not a duration: write it like 90s, 10m or 1h30m",
            args.timeout
        ))
    })?;
    let name = args.name.as_str();
    // Fails fast (exit 3) on an unknown App or an unreachable server.
    let first = get(client, ns, name).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_waiting = String::new();
    let mut report = |app: &App| -> Option<(u8, String)> {
        match status::evaluate(app, args.success_on_pause) {
            Verdict::Done { code, message } => Some((code, message)),
            Verdict::Waiting(why) => {
                if why != last_waiting {
                    eprintln!("Waiting for App {ns}/{name}: {why}");
                    last_waiting = why;
                }
                None
            }
        }
    };
    if let Some((code, message)) = report(&first) {
        println!("{message}");
        return Ok(code);
    }
    let api = Api::<App>::namespaced(client.clone(), ns);
    let mut stream = watcher::watch_object(api, name).boxed();
    let mut errors = 0u32;
    loop {
        let item = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(item) => item,
            Err(_) => {
                println!(
                    "Timed out after {} waiting for App {ns}/{name} to finish its rollout; last seen: {last_waiting}",
                    args.timeout
                );
                return Ok(exit::TIMEOUT);
            }
        };
        match item {
            Some(Ok(Some(app))) => {
                errors = 0;
                if let Some((code, message)) = report(&app) {
                    println!("{message}");
                    return Ok(code);
                }
            }
            Some(Ok(None)) => {
                return Err(Failure::usage(format!(
                    "App {name} was deleted from namespace {ns} while waiting"
                )));
            }
            Some(Err(e)) => {
                errors += 1;
                if errors >= 5 {
                    return Err(Failure::usage(format!(
                        "lost the connection to the API server while watching App {ns}/{name}: {e}"
                    )));
                }
                // The watcher restarts itself on the next poll; give the server a moment.
                tokio::time::sleep(Duration::from_millis(500 * u64::from(errors))).await;
            }
            None => return Err(Failure::usage(format!("the watch on App {ns}/{name} ended unexpectedly"))),
        }
    }
}

async fn undo(client: &Client, ns: &str, name: &str, to: Option<u32>) -> Result<u8, Failure> {
    let app = get(client, ns, name).await?;
    let sets = replica_sets(client, ns, name).await?;
    let list = history::entries(&app, &sets);
    let target = history::undo_target(&app, &list, to).map_err(Failure::usage)?;
    let by_rev = history::replica_sets_by_revision(&app, &sets);
    let template = by_rev.get(&target.hash).and_then(|rs| rs.spec.template.clone());
    let (body, how) = match template {
        Some(t) => (
            patch::undo_to_template(&app, &t)
                .map_err(|e| Failure::usage(format!("cannot undo App {ns}/{name}: {e}")))?,
            "its ReplicaSet still exists, so the operator reuses it",
        ),
        None => (
            patch::set_image(&target.image),
            "its ReplicaSet is gone, so its image rolls out as a new revision with the current settings",
        ),
    };
    write(client, ns, name, &body).await?;
    println!(
        "App {ns}/{name}: rolling back to revision {} ({}, {}); {how}.",
        target.number, target.hash, target.image
    );
    Ok(exit::OK)
}

fn import_app_spec(file: &std::path::Path, namespace: Option<&str>) -> Result<u8, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))?;
    let result = import::convert(&text, namespace)
        .map_err(|e| Failure::usage(format!("{} is not an App Platform app spec: {e}", file.display())))?;
    print!("{}", result.yaml);
    eprint!("{}", result.report);
    Ok(exit::OK)
}
