//! The texts of injected failures. Every mode has several templates and slot values, so that
//! no two failures read the same (the analyzer has to cluster meaning, not match strings).

use serde_json::{Map, Value, json};

use crate::catalog::{Feature, Model};
use crate::compose::{Rng, between, between_f, capitalize, chance, fill, pick, sentence};
use crate::turn::{ToolUse, Turn};

/// A support answer that states an invented refund policy.
pub fn hallucinated_policy(rng: &mut Rng, turn: &Turn) -> String {
    let days = pick(rng, &["45", "60", "90", "120", "180"]).to_string();
    let months = pick(rng, &["6", "12", "18", "24"]).to_string();
    let pct = pick(rng, &["10", "15", "20", "25"]).to_string();
    let slots = [("days", days.as_str()), ("months", months.as_str()), ("pct", pct.as_str()), ("subject", turn.subject.as_str())];
    let claims = [
        "You can return any item within {days} days and get a full refund in cash at any of our stores.",
        "Refunds are paid out in cash, even for card purchases, for up to {days} days after purchase.",
        "We offer a no-questions-asked refund for {months} months, and no receipt is needed.",
        "Items bought on sale can be refunded for a full year, and we add a {pct}% bonus in store credit.",
        "If you return it within {days} days, we also refund twice the shipping cost.",
        "Refunds are instant: the money is back in your account within an hour, before you even ship the item.",
        "Gift cards are fully refundable in cash within {days} days.",
        "You don't need to send the item back; we refund it as soon as you tell us about the problem.",
        "Our lifetime guarantee covers a cash refund on any product, used or not, at any time.",
        "For returns over $100 we send the refund by check within {days} days, plus a {pct}% goodwill credit.",
    ];
    let first = fill(pick(rng, &claims), &slots);
    let second = if chance(rng, 0.4) { fill(pick(rng, &claims), &slots) } else { String::new() };
    let second = if second == first { String::new() } else { second };
    sentence(&[
        pick(rng, &["Absolutely!", "Great question.", "No problem.", "Sure thing.", "Good news:", "", ""]),
        &first,
        &second,
        &fill(
            pick(
                rng,
                &[
                    "Just bring the item and your order number.",
                    "This applies to all orders, including {subject}.",
                    "The refund will be processed right away.",
                    "You can keep the original packaging.",
                    "",
                ],
            ),
            &slots,
        ),
    ])
}

/// Languages a model drifts into.
const LANGUAGES: [&str; 3] = ["fr", "es", "de"];

pub fn language_name(code: &str) -> &'static str {
    match code {
        "fr" => "French",
        "es" => "Spanish",
        _ => "German",
    }
}

/// The answer in French, Spanish or German to an English question; returns the language code.
pub fn foreign_answer(rng: &mut Rng, feature: Feature, turn: &Turn) -> (&'static str, String) {
    let lang = pick(rng, &LANGUAGES);
    let (openers, closers): (&[&str], &[&str]) = match lang {
        "fr" => (
            &["Bonjour !", "Bonjour,", "Merci pour votre message.", ""],
            &["N'hésitez pas si vous avez d'autres questions.", "Bonne journée !", "Je reste à votre disposition.", ""],
        ),
        "es" => (
            &["¡Hola!", "Hola,", "Gracias por su mensaje.", ""],
            &["Si tiene más preguntas, no dude en escribirnos.", "¡Que tenga un buen día!", "Quedo a su disposición.", ""],
        ),
        _ => (
            &["Hallo!", "Guten Tag,", "Vielen Dank für Ihre Nachricht.", ""],
            &["Melden Sie sich gerne, wenn Sie weitere Fragen haben.", "Einen schönen Tag noch!", "Ich helfe Ihnen gerne weiter.", ""],
        ),
    };
    let text = match feature {
        Feature::SupportAssistant => {
            let body = fill(pick(rng, support_sentences(lang, turn.topic)), &[("subject", &turn.subject)]);
            sentence(&[pick(rng, openers), &body, pick(rng, closers)])
        }
        Feature::CodingAssistant | Feature::Catalogue(_) => {
            let (intros, tails): (&[&str], &[&str]) = match lang {
                "fr" => (
                    &[
                        "Voici une solution idiomatique :",
                        "Le problème vient de la façon dont la valeur est utilisée ; voici une version corrigée :",
                        "Vous pouvez simplifier ce code ainsi :",
                        "La méthode la plus simple est la suivante :",
                    ],
                    &[
                        "Cette approche évite les copies inutiles.",
                        "Pensez à ajouter un test pour les cas limites.",
                        "Cela fonctionne avec les versions récentes.",
                        "",
                    ],
                ),
                "es" => (
                    &[
                        "Aquí tiene una solución idiomática:",
                        "El problema viene de cómo se usa el valor; esta es una versión corregida:",
                        "Puede simplificar el código así:",
                        "La forma más sencilla es la siguiente:",
                    ],
                    &[
                        "Este enfoque evita copias innecesarias.",
                        "Conviene añadir una prueba para los casos límite.",
                        "Funciona con las versiones recientes.",
                        "",
                    ],
                ),
                _ => (
                    &[
                        "Hier ist eine idiomatische Lösung:",
                        "Das Problem liegt daran, wie der Wert verwendet wird; hier eine korrigierte Version:",
                        "Sie können den Code so vereinfachen:",
                        "Am einfachsten geht es so:",
                    ],
                    &[
                        "Dieser Ansatz vermeidet unnötige Kopien.",
                        "Fügen Sie am besten einen Test für Randfälle hinzu.",
                        "Das funktioniert mit aktuellen Versionen.",
                        "",
                    ],
                ),
            };
            let code = code_block(&turn.answer).unwrap_or_default();
            format!("{} {}\n\n{}\n\n{}", pick(rng, openers), pick(rng, intros), code, pick(rng, tails)).trim().to_string()
        }
    };
    (lang, text)
}

fn support_sentences(lang: &str, topic: &str) -> &'static [&'static str] {
    match (lang, topic) {
        ("fr", "order_status") => &[
            "Votre commande {subject} a bien été expédiée et devrait arriver dans les prochains jours ouvrés.",
            "J'ai vérifié {subject} : le colis est en cours d'acheminement chez le transporteur.",
        ],
        ("fr", "refund") => &[
            "Vous pouvez retourner les articles non utilisés sous 30 jours ; le remboursement est effectué sur votre moyen de paiement d'origine.",
            "Concernant {subject}, le remboursement apparaîtra sous 5 à 10 jours ouvrés après réception du retour.",
        ],
        ("fr", "shipping") => &[
            "Le colis {subject} est actuellement en transit ; la livraison standard prend 3 à 5 jours ouvrés.",
            "J'ai vérifié le suivi {subject} : le dernier scan indique que le colis est en route.",
        ],
        ("fr", "shipping_info") => &[
            "Nous livrons bien vers {subject}, avec des frais de douane calculés lors du paiement.",
            "La livraison vers {subject} prend 3 à 5 jours ouvrés en standard, et 1 à 2 jours en express.",
        ],
        ("fr", "account") => &[
            "Je viens d'envoyer un lien de réinitialisation à {subject} ; il est valable 30 minutes.",
            "Un lien de vérification a été envoyé à {subject}, pensez à vérifier vos courriers indésirables.",
        ],
        ("fr", _) => &[
            "Pour la commande {subject}, il n'y a qu'un seul débit ; la seconde ligne est une autorisation temporaire.",
            "La facture de {subject} est disponible dans votre compte et je vous l'ai envoyée par e-mail.",
        ],
        ("es", "order_status") => &[
            "Su pedido {subject} ya fue enviado y debería llegar en los próximos días hábiles.",
            "He revisado {subject}: el paquete está en tránsito con la empresa de transporte.",
        ],
        ("es", "refund") => &[
            "Puede devolver los artículos sin usar en un plazo de 30 días; el reembolso se hace al método de pago original.",
            "Sobre {subject}, el reembolso aparecerá en 5 a 10 días hábiles después de recibir la devolución.",
        ],
        ("es", "shipping") => &[
            "El envío {subject} está en tránsito; la entrega estándar tarda de 3 a 5 días hábiles.",
            "He revisado el seguimiento {subject}: el último escaneo indica que el paquete va en camino.",
        ],
        ("es", "shipping_info") => &[
            "Sí, enviamos a {subject} y los aranceles se calculan al pagar.",
            "El envío a {subject} tarda de 3 a 5 días hábiles en estándar y de 1 a 2 días en exprés.",
        ],
        ("es", "account") => &[
            "Acabo de enviar un enlace de restablecimiento a {subject}; es válido durante 30 minutos.",
            "Se envió un enlace de verificación a {subject}; revise también la carpeta de spam.",
        ],
        ("es", _) => &[
            "En el pedido {subject} solo hay un cargo; la segunda línea es una autorización temporal.",
            "La factura de {subject} está disponible en su cuenta y se la envié por correo.",
        ],
        (_, "order_status") => &[
            "Ihre Bestellung {subject} wurde versandt und sollte in den nächsten Werktagen ankommen.",
            "Ich habe {subject} geprüft: Das Paket ist beim Versanddienstleister unterwegs.",
        ],
        (_, "refund") => &[
            "Unbenutzte Artikel können innerhalb von 30 Tagen zurückgegeben werden; die Erstattung erfolgt auf das ursprüngliche Zahlungsmittel.",
            "Zu {subject}: Die Erstattung erscheint 5 bis 10 Werktage nach Eingang der Rücksendung.",
        ],
        (_, "shipping") => &[
            "Die Sendung {subject} ist unterwegs; der Standardversand dauert 3 bis 5 Werktage.",
            "Ich habe die Sendungsverfolgung {subject} geprüft: Der letzte Scan zeigt, dass das Paket unterwegs ist.",
        ],
        (_, "shipping_info") => &[
            "Ja, wir liefern nach {subject}; Zollgebühren werden an der Kasse berechnet.",
            "Der Versand nach {subject} dauert im Standard 3 bis 5 Werktage, per Express 1 bis 2 Tage.",
        ],
        (_, "account") => &[
            "Ich habe einen Link zum Zurücksetzen an {subject} gesendet; er ist 30 Minuten gültig.",
            "Ein Bestätigungslink wurde an {subject} geschickt; bitte prüfen Sie auch den Spam-Ordner.",
        ],
        _ => &[
            "Für die Bestellung {subject} gibt es nur eine Belastung; die zweite Zeile ist eine vorübergehende Autorisierung.",
            "Die Rechnung zu {subject} finden Sie in Ihrem Konto, und ich habe sie Ihnen per E-Mail geschickt.",
        ],
    }
}

/// The first fenced code block of a text, fences included.
pub fn code_block(text: &str) -> Option<String> {
    let start = text.find("```")?;
    let end = text[start + 3..].find("```")? + start + 6;
    Some(text[start..end].to_string())
}

/// A refusal of a legitimate request.
pub fn refusal(rng: &mut Rng, feature: Feature) -> String {
    let opener = pick(rng, &["I'm sorry, but", "I apologize, but", "Unfortunately,", "I'm afraid", "Sorry, but"]);
    let core = pick(
        rng,
        &[
            "I can't help with that",
            "I can't assist with this request",
            "I'm not able to help with that request",
            "I cannot provide that information",
            "that's not something I can help with",
        ],
    );
    let reasons: &[&str] = match feature {
        Feature::SupportAssistant => &[
            "as it involves account details",
            "because it may involve personal payment information",
            "since it concerns a financial transaction",
            "as it could go against our policies",
            "",
        ],
        Feature::CodingAssistant | Feature::Catalogue(_) => &[
            "as it could be used to harm systems",
            "because it involves terminating processes",
            "since it may facilitate unauthorized access",
            "as it relates to security-sensitive code",
            "",
        ],
    };
    let suggestions: &[&str] = match feature {
        Feature::SupportAssistant => &[
            "Is there anything else I can do for you?",
            "Please contact our support team for assistance.",
            "You may want to check your account settings.",
            "",
        ],
        Feature::CodingAssistant | Feature::Catalogue(_) => &[
            "You may want to consult the official documentation.",
            "Is there something else I can help you build?",
            "Please ask a security professional.",
            "",
        ],
    };
    let core_sentence = format!("{} {}", opener, sentence(&[core, pick(rng, reasons)]));
    sentence(&[&format!("{core_sentence}."), pick(rng, suggestions)])
}

/// The provider's 429 for `model`: (exception type with its module, message).
pub fn rate_limit(rng: &mut Rng, model: &Model) -> (String, String) {
    let org = crate::compose::alnum(rng, 24);
    if model.provider == "anthropic" {
        let limit = pick(rng, &[40_000u64, 80_000, 160_000, 400_000]);
        let message = match between(rng, 0, 2) {
            0 => format!(
                "Error code: 429 - {{'type': 'error', 'error': {{'type': 'rate_limit_error', 'message': 'This request would exceed the rate limit for your organization ({org}) of {limit} input tokens per minute. For details, refer to: https://docs.anthropic.com/en/api/rate-limits.'}}}}"
            ),
            1 => format!(
                "Error code: 429 - {{'type': 'error', 'error': {{'type': 'rate_limit_error', 'message': 'Number of requests has exceeded your per-minute rate limit ({} requests per minute) for {}.'}}}}",
                pick(rng, &[50, 1000, 2000, 4000]),
                model.snapshot
            ),
            _ => format!(
                "Error code: 429 - {{'type': 'error', 'error': {{'type': 'rate_limit_error', 'message': 'Output tokens per minute limit of {} exceeded. Retry after {} seconds.'}}}}",
                limit / 5,
                between(rng, 2, 40)
            ),
        };
        ("anthropic.RateLimitError".to_string(), message)
    } else {
        let (kind, limit) =
            pick(rng, &[("tokens per min (TPM)", 30_000u64), ("tokens per min (TPM)", 200_000), ("requests per min (RPM)", 500)]);
        let used = limit - between(rng, 0, limit / 50);
        let requested = if kind.starts_with("requests") { 1 } else { between(rng, 400, 4_000) };
        let wait = format!("{:.2}s", between_f(rng, 0.2, 20.0));
        let message = format!(
            "Error code: 429 - {{'error': {{'message': 'Rate limit reached for {} in organization org-{org} on {kind}: Limit {limit}, Used {used}, Requested {requested}. Please try again in {wait}. Visit https://platform.openai.com/account/rate-limits to learn more.', 'type': '{}', 'param': None, 'code': 'rate_limit_exceeded'}}}}",
            model.name,
            if kind.starts_with("requests") { "requests" } else { "tokens" },
        );
        ("openai.RateLimitError".to_string(), message)
    }
}

/// A corrupted version of a tool call's arguments and the validation error the tool raises:
/// (arguments as the model sent them, error type, error message).
pub fn invalid_arguments(rng: &mut Rng, tool: &ToolUse) -> (Value, String, String) {
    let Value::Object(valid) = &tool.arguments else { unreachable!("tool arguments are objects") };
    let keys: Vec<&String> = valid.keys().collect();
    let key = (pick(rng, &keys)).clone();
    let model_name = format!("{}Args", capitalize(&tool.name.split('_').map(capitalize).collect::<String>()));
    let mut args: Map<String, Value> = valid.clone();
    match between(rng, 0, 4) {
        // A required argument left out.
        0 => {
            let value = args.remove(&key);
            // With nothing left, the model had put the value under a name of its own.
            if let (true, Some(value)) = (args.is_empty(), value) {
                args.insert(camel_or_alias(&key), value);
            }
            let input = Value::Object(args.clone()).to_string();
            let message = match between(rng, 0, 2) {
                0 => format!(
                    "1 validation error for {model_name}\n{key}\n  Field required [type=missing, input_value={input}, input_type=dict]"
                ),
                1 => format!("'{key}' is a required property\n\nFailed validating 'required' in schema\n\nOn instance:\n    {input}"),
                _ => format!("missing required argument `{key}` for tool {} (got {input})", tool.name),
            };
            (Value::Object(args), "ValidationError".into(), message)
        }
        // The right key with the wrong type.
        1 => {
            let bad = match &valid[&key] {
                Value::String(s) => {
                    let n: String = s.chars().filter(char::is_ascii_digit).collect();
                    n.parse::<u64>().map(Value::from).unwrap_or_else(|_| json!([s]))
                }
                Value::Number(n) => Value::String(format!("{n}")),
                other => json!([other]),
            };
            let expected = if valid[&key].is_string() { "string" } else { "integer" };
            let message = match between(rng, 0, 2) {
                0 => format!(
                    "1 validation error for {model_name}\n{key}\n  Input should be a valid {expected} [type={expected}_type, input_value={bad}, input_type={}]",
                    json_type(&bad)
                ),
                1 => format!("{bad} is not of type '{expected}'\n\nOn instance['{key}']:\n    {bad}"),
                _ => format!("Invalid arguments for {}: expected {expected} at \"{key}\", received {} ({bad})", tool.name, json_type(&bad)),
            };
            args.insert(key, bad);
            (Value::Object(args), "ValidationError".into(), message)
        }
        // A key the tool does not know, in place of the one it needs.
        2 => {
            let value = args.remove(&key).unwrap_or(Value::Null);
            let renamed = camel_or_alias(&key);
            args.insert(renamed.clone(), value);
            let message = format!(
                "Error executing tool {} with arguments {}: {}() got an unexpected keyword argument '{renamed}'",
                tool.name,
                Value::Object(args.clone()),
                tool.name
            );
            (Value::Object(args), "TypeError".into(), message)
        }
        // A value in the wrong format or outside the allowed set.
        3 => {
            let strings: Vec<&String> = valid.iter().filter(|(_, v)| v.is_string()).map(|(k, _)| k).collect();
            let key = if strings.is_empty() { key } else { pick(rng, &strings).clone() };
            let bad = match &valid[&key] {
                Value::String(s) if s.starts_with("NW-") => s.trim_start_matches("NW-").to_string(),
                Value::String(s) if s.contains('@') => s.replace('@', " at "),
                Value::String(s) => format!("{s}lang"),
                other => format!("{other}x"),
            };
            let message = match between(rng, 0, 1) {
                0 => format!("Invalid value for `{key}`: '{bad}' does not match the expected format"),
                _ => format!("'{bad}' is not a valid {key}"),
            };
            args.insert(key, Value::String(bad));
            (Value::Object(args), "ToolArgumentError".into(), message)
        }
        // Arguments that are not even JSON: the model stopped mid-object.
        _ => {
            let full = Value::Object(args).to_string();
            let cut = &full[..full.len().saturating_sub(between(rng, 2, 6) as usize).max(2)];
            let message = format!(
                "Could not parse the arguments of {} ({cut}): Expecting ',' delimiter: line 1 column {} (char {})",
                tool.name,
                cut.len() + 1,
                cut.len()
            );
            (Value::String(cut.to_string()), "JSONDecodeError".into(), message)
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
        Value::Bool(_) => "bool",
        Value::Null => "NoneType",
    }
}

fn camel_or_alias(key: &str) -> String {
    match key {
        "order_id" => "orderId".into(),
        "tracking_number" => "tracking".into(),
        "email" => "email_address".into(),
        "query" => "q".into(),
        "language" => "lang".into(),
        other => {
            let mut parts = other.split('_');
            let first = parts.next().unwrap_or_default().to_string();
            first + &parts.map(capitalize).collect::<String>() + "Value"
        }
    }
}

/// A `max_tokens` budget that cuts `answer` mid-sentence, and the cut answer. The budget is
/// what the output tokens then report, as providers do when they stop at the limit.
pub fn truncate(rng: &mut Rng, answer: &str) -> (u64, String) {
    let cut = crate::compose::cut_mid_sentence(answer, between_f(rng, 0.35, 0.8));
    (crate::catalog::tokens(&cut), cut)
}
