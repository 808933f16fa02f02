//! The catalogue's users write in English, French, Spanish, German and Portuguese: the phrases
//! they and the assistant use around the content, in each language.

/// Openers of an assistant's answer.
pub fn openers(lang: &str) -> &'static [&'static str] {
    match lang {
        "fr" => &["", "Bonjour,", "Merci pour votre question.", "Bonne question !"],
        "es" => &["", "¡Hola!", "Gracias por tu pregunta.", "Claro."],
        "de" => &["", "Hallo,", "Danke für Ihre Frage.", "Gerne."],
        "pt" => &["", "Olá!", "Obrigado pela pergunta.", "Claro."],
        _ => &["", "Hi!", "Thanks for asking.", "Sure."],
    }
}

/// Closers of an answer, also what a user appends when touching up a good one.
pub fn closers(lang: &str) -> &'static [&'static str] {
    match lang {
        "fr" => &["", "N'hésitez pas si vous avez d'autres questions.", "Bonne journée !"],
        "es" => &["", "Si tienes más preguntas, aquí estoy.", "¡Que tengas un buen día!"],
        "de" => &["", "Melden Sie sich gerne bei weiteren Fragen.", "Einen schönen Tag noch!"],
        "pt" => &["", "Se tiver mais dúvidas, é só perguntar.", "Tenha um ótimo dia!"],
        _ => &["", "Let me know if you have other questions.", "Have a great day!"],
    }
}

/// Noise comments on good answers.
pub fn noise_comments(lang: &str) -> &'static [&'static str] {
    match lang {
        "fr" => &["Pas très utile.", "Trop long.", "Merci !", "Ce n'est pas ce que je demandais."],
        "es" => &["No muy útil.", "Demasiado largo.", "¡Gracias!", "No es lo que pregunté."],
        "de" => &["Nicht hilfreich.", "Zu lang.", "Danke!", "Nicht das, was ich gefragt habe."],
        "pt" => &["Não ajudou muito.", "Longo demais.", "Obrigado!", "Não foi o que perguntei."],
        _ => &["Not helpful.", "Too long.", "Not what I asked.", "Great, thanks!"],
    }
}

/// The comments of the thumbs-down-then-escalate group: generic, so that they cannot tell the
/// group's modes apart.
pub fn wrong_answer_comments(lang: &str) -> &'static [&'static str] {
    match lang {
        "fr" => &["C'est faux.", "Ce n'est pas correct, je veux parler à quelqu'un.", "Réponse incorrecte."],
        "es" => &["Eso no es correcto.", "Respuesta incorrecta, quiero hablar con una persona.", "No es cierto."],
        "de" => &["Das stimmt nicht.", "Falsche Antwort, ich möchte mit einem Menschen sprechen.", "Nicht korrekt."],
        "pt" => &["Isso está errado.", "Resposta incorreta, quero falar com um atendente.", "Não é verdade."],
        _ => &["This is wrong.", "Not correct, I want to talk to a person.", "That's not right."],
    }
}

pub fn refusal_comments(lang: &str) -> &'static [&'static str] {
    match lang {
        "fr" => &["Pourquoi refuser ? C'est une question normale.", "Il ne répond pas à ma question."],
        "es" => &["¿Por qué no responde? Es una pregunta normal.", "No contesta mi pregunta."],
        "de" => &["Warum keine Antwort? Das ist eine normale Frage.", "Beantwortet meine Frage nicht."],
        "pt" => &["Por que não responde? É uma pergunta normal.", "Não respondeu minha pergunta."],
        _ => &["Why can't you answer this? It's a normal question.", "It didn't answer my question."],
    }
}

pub fn language_comments(lang: &str) -> &'static [&'static str] {
    match lang {
        "fr" => &["Pourquoi en anglais ?", "Répondez en français s'il vous plaît."],
        "es" => &["¿Por qué en inglés?", "Responde en español, por favor."],
        "de" => &["Warum auf Englisch?", "Bitte auf Deutsch antworten."],
        "pt" => &["Por que em inglês?", "Responda em português, por favor."],
        _ => &["Wrong language."],
    }
}
