//! `!` / `/` commands, answered without the brain. Settings are kept per sender.

use super::InboxItem;
use super::access::{self, Session};
use crate::brain::Think;
use crate::channels::{ChannelKind, Hub};
use crate::store::StoreError;

pub const VERBOSE_LEVELS: [&str; 3] = ["off", "tools", "full"];
pub const TIERS: [&str; 4] = ["flash", "haiku", "sonnet", "opus"];

const HELP: &str = "Commands (start with ! or /):
help — this list
think <off|minimal|low|medium|high|xhigh> — reasoning effort
verbose <off|tools|full> — how much tool activity is shown
model <flash|haiku|sonnet|opus> (or tier …) — model tier
status — your current settings
reset — default settings and a new conversation; new / clear — a new conversation
stats — your usage
approve <code> — let a paired sender in
yes / no — run or cancel a tool that needs confirmation
Anything else goes to the assistant.";

/// What the router does after a command.
#[derive(Debug)]
pub enum Outcome {
    Reply(String),
    /// Run the brain after all (`!yes`): the stored text with the confirmed tool allowed.
    RunTurn {
        text: String,
        approved_tools: Vec<String>,
    },
}

/// `(command, arguments)` when the text is a command. A Telegram-style `/cmd@botname` loses the
/// bot name.
pub fn parse(text: &str) -> Option<(String, String)> {
    let text = text.trim();
    let rest = text.strip_prefix('!').or_else(|| text.strip_prefix('/'))?;
    let (word, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let word = word.split('@').next().unwrap_or(word).to_lowercase();
    if word.is_empty() || !word.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    Some((word, args.trim().to_string()))
}

pub fn conversation_key(item: &InboxItem, session: &Session) -> String {
    if session.epoch == 0 {
        format!("{}:{}", item.channel, item.chat_id)
    } else {
        format!("{}:{}#{}", item.channel, item.chat_id, session.epoch)
    }
}

pub async fn handle(hub: &Hub, item: &InboxItem, command: &str, args: &str) -> Result<Outcome, StoreError> {
    let store = &hub.state().store;
    let mut session = access::session(store, &item.channel, &item.sender_id).await?;
    let arg = args.split_whitespace().next().unwrap_or("").to_lowercase();
    let reply = match command {
        "help" | "yardim" | "yardım" => HELP.to_string(),
        "start" => format!("Hello {}! I'm your Nexus assistant. Just write to me.\n\n{HELP}", item.sender_name),
        "think" => match Think::parse(&arg) {
            Some(level) => {
                session.think = level.name().to_string();
                access::save_session(store, &item.channel, &item.sender_id, &session).await?;
                format!("Thinking level set to {}.", level.name())
            }
            None => {
                let levels: Vec<&str> = Think::ALL.iter().map(|t| t.name()).collect();
                format!("Usage: !think <{}> (now: {})", levels.join("|"), session.think)
            }
        },
        "verbose" => {
            let level = match arg.as_str() {
                "on" => Some("tools"),
                other => VERBOSE_LEVELS.iter().copied().find(|l| *l == other),
            };
            match level {
                Some(level) => {
                    session.verbose = level.to_string();
                    access::save_session(store, &item.channel, &item.sender_id, &session).await?;
                    format!("Verbose level set to {level}.")
                }
                None => format!("Usage: !verbose <{}> (now: {})", VERBOSE_LEVELS.join("|"), session.verbose),
            }
        }
        "model" | "tier" => match TIERS.iter().find(|t| **t == arg) {
            Some(tier) => {
                session.tier = Some(tier.to_string());
                access::save_session(store, &item.channel, &item.sender_id, &session).await?;
                format!("Model tier set to {tier}.")
            }
            None => format!(
                "Usage: !{command} <{}> (now: {})",
                TIERS.join("|"),
                session.tier.as_deref().unwrap_or("default")
            ),
        },
        "status" => format!(
            "Channel: {}\nThinking: {}\nVerbose: {}\nModel tier: {}\nConversation: {}\nWaiting for confirmation: {}",
            item.channel,
            session.think,
            session.verbose,
            session.tier.as_deref().unwrap_or("default"),
            conversation_key(item, &session),
            session.pending_turn().map(|p| p.tool).unwrap_or_else(|| "nothing".into()),
        ),
        "reset" => {
            let defaults = Session::default();
            session.think = defaults.think;
            session.verbose = defaults.verbose;
            session.tier = None;
            session.pending = None;
            session.epoch += 1;
            access::save_session(store, &item.channel, &item.sender_id, &session).await?;
            "Settings reset to defaults; a new conversation starts now.".to_string()
        }
        "new" | "clear" => {
            session.epoch += 1;
            session.pending = None;
            access::save_session(store, &item.channel, &item.sender_id, &session).await?;
            "A new conversation starts now.".to_string()
        }
        "stats" => format!(
            "Messages answered: {}\nTokens in: {}\nTokens out: {}",
            session.messages, session.input_tokens, session.output_tokens
        ),
        "approve" => approve(hub, item, &arg).await?,
        "yes" | "evet" => match session.pending_turn() {
            Some(pending) => {
                session.pending = None;
                access::save_session(store, &item.channel, &item.sender_id, &session).await?;
                return Ok(Outcome::RunTurn { text: pending.text, approved_tools: vec![pending.tool] });
            }
            None => "Nothing is waiting for confirmation.".to_string(),
        },
        "no" | "hayir" | "hayır" => match session.pending_turn() {
            Some(pending) => {
                session.pending = None;
                access::save_session(store, &item.channel, &item.sender_id, &session).await?;
                format!("Cancelled: {} was not run.", pending.tool)
            }
            None => "Nothing is waiting for confirmation.".to_string(),
        },
        other => format!("Unknown command '{other}'. Send !help for the list."),
    };
    Ok(Outcome::Reply(reply))
}

async fn approve(hub: &Hub, item: &InboxItem, code: &str) -> Result<String, StoreError> {
    if code.is_empty() {
        return Ok("Usage: !approve <code>".into());
    }
    let Some(kind) = ChannelKind::parse(&item.channel) else {
        return Ok("Pairings are approved from a chat of the same channel.".into());
    };
    let Some(pairing) = access::take_pairing(&hub.state().store, kind.as_str(), code).await? else {
        return Ok(format!("No open pairing with code {}. Codes expire after an hour.", code.to_uppercase()));
    };
    match crate::channels::api::admit(hub, kind, &pairing).await {
        Ok(()) => Ok(format!("Approved {} ({}).", pairing.sender_name, pairing.sender_id)),
        Err(e) => Err(StoreError::Data(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_both_prefixes_and_bot_names() {
        assert_eq!(parse("!think high"), Some(("think".into(), "high".into())));
        assert_eq!(parse("/help@nexus_bot"), Some(("help".into(), String::new())));
        assert_eq!(parse("  /TIER Opus "), Some(("tier".into(), "Opus".into())));
        assert_eq!(parse("hello"), None);
        assert_eq!(parse("/etc/hosts is big"), None);
        assert_eq!(parse("!"), None);
    }
}
