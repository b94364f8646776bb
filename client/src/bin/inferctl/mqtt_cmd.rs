//! `inferctl --mqtt URL [--node N | --pool] …`: the same commands through a broker. Models come
//! from the daemons' retained status; management stays on D-Bus.

use clap::Args;
use inferd_client::mqtt::{MqttClient, Target};
use inferd_client::Error;

use crate::transport::{Broker, Transport};
use crate::{commands, Command};

#[derive(Args)]
pub struct MqttArgs {
    /// Use MQTT instead of D-Bus: the broker, mqtt://host[:port]
    #[arg(long, global = true, env = "INFERD_MQTT")]
    pub mqtt: Option<String>,
    /// With --mqtt: the daemon's node name
    #[arg(long, global = true, conflicts_with = "pool")]
    pub node: Option<String>,
    /// With --mqtt: any daemon of the pool
    #[arg(long, global = true)]
    pub pool: bool,
    /// With --mqtt: the daemons' topic prefix
    #[arg(long, global = true, default_value = "inferd")]
    pub prefix: String,
    /// With --mqtt: where answers come back (this client's id is added); outside the
    /// daemons' prefix, and under their mqtt.reply_prefix when they set one
    #[arg(long, global = true, default_value = "replies")]
    pub replies: String,
}

/// Runs a daemon command through the broker at `url`.
pub async fn run(url: &str, a: &MqttArgs, json_out: bool, command: Command) -> Result<(), Error> {
    let target = match (&a.node, a.pool) {
        (Some(n), _) => Target::Node(n.clone()),
        (None, true) => Target::Pool,
        (None, false) => {
            return Err(Error::InvalidInput(
                "--mqtt needs --node NAME or --pool".into(),
            ))
        }
    };
    let client = MqttClient::connect(url, &a.prefix, &a.replies, target.clone()).await?;
    let t = Transport::Mqtt(Broker {
        client: &client,
        target,
        url,
        prefix: &a.prefix,
    });
    commands::run(&t, json_out, command).await
}
