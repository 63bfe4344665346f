//! The Doge tokenizer's special tokens and chat template (SmallDoge/Doge-tokenizer, Apache-2.0;
//! see doge-architecture.md section 7.5), given to every tokenizer this project trains so that
//! trained and downloaded tokenizers agree on ids 0..256 and on the chat layout.

/// Id 0: prepended to every encoded text.
pub const BOS: &str = "<|begin_of_text|>";
/// Id 1: ends documents and turns.
pub const EOS: &str = "<|end_of_text|>";
/// Id 2.
pub const PAD: &str = "<|finetune_right_pad_id|>";

/// The Doge chat template, byte for byte as in the tokenizer's tokenizer_config.json
/// (Llama-3.1 layout, every turn closed by `<|end_of_text|>`).
pub const DOGE_CHAT_TEMPLATE: &str = include_str!("doge_chat_template.jinja");

/// The 256 special tokens in id order: 12 named ones, then `<|reserved_special_token_0|>` ..
/// `<|reserved_special_token_243|>`.
pub fn doge_special_tokens() -> Vec<String> {
    let named = [
        BOS,
        EOS,
        PAD,
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
        "<|begin_of_thought|>",
        "<|end_of_thought|>",
        "<|begin_of_solution|>",
        "<|end_of_solution|>",
    ];
    let mut out: Vec<String> = named.iter().map(|s| s.to_string()).collect();
    out.extend((0..244).map(|i| format!("<|reserved_special_token_{i}|>")));
    out
}
