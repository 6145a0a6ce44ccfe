//! `authentify-fakes`: serves the Atlas and Cloudflare fakes on given addresses for the local
//! environment, seeded from the command line, until interrupted; then lists every schema
//! violation it saw and exits non-zero if there was any. Test credentials only: it must never be
//! given real ones, and it binds to loopback unless told otherwise.

use std::net::SocketAddr;

use anyhow::Context as _;
use authentify_fakes::{AtlasFake, CloudflareFake};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Serve the Atlas and Cloudflare fakes, checked against the vendors' schemas")]
struct Args {
    /// Address of the Atlas fake.
    #[arg(long, env = "FAKE_ATLAS_ADDR", default_value = "127.0.0.1:18181")]
    atlas_addr: SocketAddr,
    /// Address of the Cloudflare fake.
    #[arg(long, env = "FAKE_CLOUDFLARE_ADDR", default_value = "127.0.0.1:18182")]
    cloudflare_addr: SocketAddr,
    /// Atlas API key pair `PUBLIC:PRIVATE` to accept (repeatable).
    #[arg(long = "atlas-api-key")]
    atlas_api_keys: Vec<String>,
    /// Atlas service account `CLIENT_ID:SECRET` to accept (repeatable).
    #[arg(long = "atlas-service-account")]
    atlas_service_accounts: Vec<String>,
    /// Atlas cluster `GROUP_ID/NAME` (state IDLE) or `GROUP_ID/NAME=STATE` (repeatable).
    #[arg(long = "atlas-cluster")]
    atlas_clusters: Vec<String>,
    /// Cloudflare API token to accept (repeatable).
    #[arg(long = "cloudflare-token")]
    cloudflare_tokens: Vec<String>,
    /// Cloudflare zone name to create (repeatable); its id is printed.
    #[arg(long = "cloudflare-zone")]
    cloudflare_zones: Vec<String>,
}

fn pair<'a>(value: &'a str, sep: char, what: &str) -> anyhow::Result<(&'a str, &'a str)> {
    value.split_once(sep).with_context(|| format!("{what} must look like A{sep}B, got {value:?}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let atlas = AtlasFake::start_on(args.atlas_addr).await.context("start the Atlas fake")?;
    let cloudflare =
        CloudflareFake::start_on(args.cloudflare_addr).await.context("start the Cloudflare fake")?;
    for key in &args.atlas_api_keys {
        let (public, private) = pair(key, ':', "--atlas-api-key")?;
        atlas.add_api_key(public, private);
    }
    for account in &args.atlas_service_accounts {
        let (id, secret) = pair(account, ':', "--atlas-service-account")?;
        atlas.add_service_account(id, secret);
    }
    for cluster in &args.atlas_clusters {
        let (group, rest) = pair(cluster, '/', "--atlas-cluster")?;
        let (name, state) = rest.split_once('=').unwrap_or((rest, "IDLE"));
        atlas.put_cluster(group, name, state);
    }
    for token in &args.cloudflare_tokens {
        cloudflare.add_token(token);
    }
    println!("atlas      {}", atlas.base_url());
    println!("cloudflare {}", cloudflare.base_url());
    for zone in &args.cloudflare_zones {
        println!("zone       {zone} {}", cloudflare.add_zone(zone));
    }

    tokio::signal::ctrl_c().await.context("wait for Ctrl-C")?;
    let violations: Vec<String> = atlas
        .violations()
        .into_iter()
        .map(|v| format!("atlas: {v}"))
        .chain(cloudflare.violations().into_iter().map(|v| format!("cloudflare: {v}")))
        .collect();
    for v in &violations {
        eprintln!("{v}");
    }
    anyhow::ensure!(violations.is_empty(), "{} schema violation(s)", violations.len());
    Ok(())
}
