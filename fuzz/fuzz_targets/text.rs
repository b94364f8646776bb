//! The streaming text pipeline of a generation: incremental detokenizing (byte-level tokens,
//! so partial UTF-8 is common), stop strings, and the reasoning splitter, fed in arbitrary
//! pieces. Checks: text never ends in a split character (U+FFFD), a stop string is never
//! shown, and inline reasoning loses nothing.
#![no_main]

use inferd::fuzz::{Detokenizer, Reasoning, ReasoningSplitter, StopMatcher};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (head, tokens) = data.split_at(2);
    // Token i decodes to byte i: a byte-level vocabulary.
    let decode = |ids: &[u32]| {
        String::from_utf8_lossy(&ids.iter().map(|&i| i as u8).collect::<Vec<u8>>()).into_owned()
    };
    let mut detok = Detokenizer::default();
    let stop = ["</s>", "\n\n", "STOP"][head[0] as usize % 3];
    let mut stops = StopMatcher::new(vec![stop.to_owned()]);
    let mut inline = ReasoningSplitter::new(Reasoning::Inline, head[1] & 1 == 1);
    let mut separate = ReasoningSplitter::new(Reasoning::Separate, head[1] & 1 == 1);
    let (mut shown, mut inline_in, mut inline_out) = (String::new(), String::new(), String::new());
    for &b in tokens {
        if let Some(delta) = detok.push(u32::from(b), decode) {
            assert!(!delta.ends_with('\u{FFFD}'), "released a split character");
            let (text, stopped) = stops.push(&delta);
            shown.push_str(&text);
            inline_in.push_str(&text);
            for (piece, _) in inline.push(&text) {
                inline_out.push_str(&piece);
            }
            let _ = separate.push(&text);
            if stopped {
                break;
            }
        }
    }
    let rest = stops.flush();
    shown.push_str(&rest);
    inline_in.push_str(&rest);
    for (piece, _) in inline.push(&rest).into_iter().chain(inline.flush()) {
        inline_out.push_str(&piece);
    }
    let _ = separate.flush();
    assert!(!shown.contains(stop), "a stop string was shown: {shown:?}");
    assert_eq!(inline_in, inline_out, "inline reasoning changed the text");
});
