//! Prompt cleaning of the Wan2.1 text pipeline (`prompt_clean` in the original, `prompt_clean` in
//! diffusers' `pipeline_wan.py`): `fix_text`, HTML unescape twice, strip, collapse whitespace.
//!
//! # What is reproduced
//! * HTML unescaping with the rules of Python's `html.unescape`: decimal and hexadecimal character
//!   references (with the same replacements for invalid code points: C1 references through
//!   windows-1252, `U+FFFD` for 0, surrogates and out-of-range values, nothing for the
//!   non-characters), named references with or without the final `;` for the legacy names (the
//!   longest legacy prefix wins: `&ampfoo` -> `&foo`). Named references are looked up in a table of
//!   the 106 legacy (Latin-1) names and about 250 common `;`-terminated ones (punctuation, arrows,
//!   Greek letters, math symbols); HTML5 names outside that table are left as they are.
//! * Whitespace as Python's `re.sub(r"\s+", " ", text).strip()`: Unicode white space plus the
//!   separators `U+001C..U+001F`.
//!
//! # What is not reproduced: ftfy's `fix_text`
//! The reference first runs `ftfy.fix_text`. Only its simple, deterministic character maps are done
//! here: curly quotes to ASCII (`uncurl_quotes`), Latin ligatures such as `ﬁ` (`fix_latin_ligatures`)
//! and full-width ASCII `U+FF01..U+FF5E` plus the ideographic space (part of
//! `fix_character_width`). Not reproduced: mojibake repair (`fix_encoding`), ftfy's own repeated
//! HTML unescaping (it matters only for text escaped three or more times), C1-control and
//! terminal-escape fixes, control-character removal and NFC normalisation. The umT5 tokenizer
//! normalises with NFKC, which covers widths, ligatures and composition for tokenisation.

/// Cleans a prompt like the Wan2.1 pipeline (see the module docs for the ftfy subset).
///
/// Returns the empty string for a prompt made of white space only.
pub fn clean_prompt(text: &str) -> String {
    let fixed = fix_text_subset(text);
    let unescaped = html_unescape(&html_unescape(&fixed));
    collapse_whitespace(&unescaped)
}

/// The character maps of ftfy's `fix_text` reproduced here: Latin ligatures, full-width ASCII and
/// the ideographic space, then curly quotes (in ftfy's order).
pub fn fix_text_subset(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            'Ĳ' => out.push_str("IJ"),
            'ĳ' => out.push_str("ij"),
            'ŉ' => out.push_str("'n"), // ftfy: "ʼn", then ʼ is uncurled
            'Ǳ' => out.push_str("DZ"),
            'ǲ' => out.push_str("Dz"),
            'ǳ' => out.push_str("dz"),
            'Ǉ' => out.push_str("LJ"),
            'ǈ' => out.push_str("Lj"),
            'ǉ' => out.push_str("lj"),
            'Ǌ' => out.push_str("NJ"),
            'ǋ' => out.push_str("Nj"),
            'ǌ' => out.push_str("nj"),
            'ﬀ' => out.push_str("ff"),
            'ﬁ' => out.push_str("fi"),
            'ﬂ' => out.push_str("fl"),
            'ﬃ' => out.push_str("ffi"),
            'ﬄ' => out.push_str("ffl"),
            'ﬅ' => out.push_str("ſt"),
            'ﬆ' => out.push_str("st"),
            '\u{3000}' => out.push(' '),
            '\u{ff01}'..='\u{ff5e}' => {
                out.push(char::from_u32(c as u32 - 0xfee0).unwrap_or(c));
            }
            '\u{02bc}' | '\u{2018}'..='\u{201b}' => out.push('\''),
            '\u{201c}'..='\u{201f}' => out.push('"'),
            _ => out.push(c),
        }
    }
    out
}

/// Python's `str.isspace` (what `\s` matches in `re`): Unicode white space and `U+001C..U+001F`.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Replaces every run of white space by one space and trims both ends.
pub fn collapse_whitespace(text: &str) -> String {
    text.split(is_python_space)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decodes HTML character references like Python's `html.unescape` (named references limited to
/// the table described in the module docs).
pub fn html_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match decode_reference(after) {
            Some((decoded, used)) => {
                out.push_str(&decoded);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Decodes the reference that follows an `&`; returns the text and the number of bytes consumed,
/// or `None` when the `&` starts no reference (it is then kept as is).
fn decode_reference(s: &str) -> Option<(String, usize)> {
    let bytes = s.as_bytes();
    if bytes.first() == Some(&b'#') {
        let (hex, start) = match bytes.get(1) {
            Some(b'x') | Some(b'X') => (true, 2),
            _ => (false, 1),
        };
        let digits = s[start..]
            .bytes()
            .take_while(|b| {
                if hex {
                    b.is_ascii_hexdigit()
                } else {
                    b.is_ascii_digit()
                }
            })
            .count();
        if digits == 0 {
            return None;
        }
        let mut used = start + digits;
        if bytes.get(used) == Some(&b';') {
            used += 1;
        }
        let num = u32::from_str_radix(&s[start..start + digits], if hex { 16 } else { 10 })
            .unwrap_or(u32::MAX); // overflow: out of range like Python's big int
        return Some((numeric_reference(num), used));
    }
    // Named: up to 32 characters other than \t \n \f space < & # ;, then an optional ';'.
    let mut end = 0;
    for (count, (i, c)) in s.char_indices().enumerate() {
        if count == 32 || matches!(c, '\t' | '\n' | '\u{c}' | ' ' | '<' | '&' | '#' | ';') {
            break;
        }
        end = i + c.len_utf8();
    }
    if end == 0 {
        return None;
    }
    let full = if bytes.get(end) == Some(&b';') {
        end + 1
    } else {
        end
    };
    let name = &s[..full];
    if let Some(v) = lookup_entity(name) {
        return Some((v.to_string(), full));
    }
    // Longest prefix (at least 2 characters, shorter than the whole) that is a legacy name.
    let boundaries: Vec<usize> = name.char_indices().map(|(i, _)| i).skip(2).collect();
    for &cut in boundaries.iter().rev() {
        if let Some(v) = lookup_entity(&name[..cut]) {
            return Some((v.to_string(), cut));
        }
    }
    None
}

/// Python's handling of `&#N;`.
fn numeric_reference(num: u32) -> String {
    if let Some(&(_, replacement)) = INVALID_CHARREFS.iter().find(|(n, _)| *n == num) {
        return replacement.to_string();
    }
    if (0xD800..=0xDFFF).contains(&num) || num > 0x10FFFF {
        return "\u{fffd}".to_string();
    }
    let noncharacter = (0x1..=0x8).contains(&num)
        || (0xe..=0x1f).contains(&num)
        || (0x7f..=0x9f).contains(&num)
        || (0xfdd0..=0xfdef).contains(&num)
        || num == 0xb
        || (num & 0xfffe) == 0xfffe;
    if noncharacter {
        return String::new();
    }
    char::from_u32(num)
        .map(String::from)
        .unwrap_or_else(|| "\u{fffd}".to_string())
}

/// References to code points that HTML maps elsewhere (`_invalid_charrefs` of Python's `html`).
const INVALID_CHARREFS: &[(u32, &str)] = &[
    (0x00, "\u{fffd}"),
    (0x0d, "\r"),
    (0x80, "\u{20ac}"),
    (0x81, "\u{81}"),
    (0x82, "\u{201a}"),
    (0x83, "\u{0192}"),
    (0x84, "\u{201e}"),
    (0x85, "\u{2026}"),
    (0x86, "\u{2020}"),
    (0x87, "\u{2021}"),
    (0x88, "\u{02c6}"),
    (0x89, "\u{2030}"),
    (0x8a, "\u{0160}"),
    (0x8b, "\u{2039}"),
    (0x8c, "\u{0152}"),
    (0x8d, "\u{8d}"),
    (0x8e, "\u{017d}"),
    (0x8f, "\u{8f}"),
    (0x90, "\u{90}"),
    (0x91, "\u{2018}"),
    (0x92, "\u{2019}"),
    (0x93, "\u{201c}"),
    (0x94, "\u{201d}"),
    (0x95, "\u{2022}"),
    (0x96, "\u{2013}"),
    (0x97, "\u{2014}"),
    (0x98, "\u{02dc}"),
    (0x99, "\u{2122}"),
    (0x9a, "\u{0161}"),
    (0x9b, "\u{203a}"),
    (0x9c, "\u{0153}"),
    (0x9d, "\u{9d}"),
    (0x9e, "\u{017e}"),
    (0x9f, "\u{0178}"),
];

fn lookup_entity(name: &str) -> Option<&'static str> {
    NAMED_ENTITIES
        .binary_search_by(|(k, _)| (*k).cmp(name))
        .ok()
        .map(|i| NAMED_ENTITIES[i].1)
}

/// Named character references (HTML5 names, sorted): the legacy names with and without `;` and a
/// selection of common `;`-terminated names (generated from Python's `html.entities.html5`).
const NAMED_ENTITIES: &[(&str, &str)] = &[
    ("AElig", "\u{c6}"),
    ("AElig;", "\u{c6}"),
    ("AMP", "&"),
    ("AMP;", "&"),
    ("Aacute", "\u{c1}"),
    ("Aacute;", "\u{c1}"),
    ("Acirc", "\u{c2}"),
    ("Acirc;", "\u{c2}"),
    ("Agrave", "\u{c0}"),
    ("Agrave;", "\u{c0}"),
    ("Alpha;", "\u{391}"),
    ("Aring", "\u{c5}"),
    ("Aring;", "\u{c5}"),
    ("Atilde", "\u{c3}"),
    ("Atilde;", "\u{c3}"),
    ("Auml", "\u{c4}"),
    ("Auml;", "\u{c4}"),
    ("Beta;", "\u{392}"),
    ("COPY", "\u{a9}"),
    ("COPY;", "\u{a9}"),
    ("Ccedil", "\u{c7}"),
    ("Ccedil;", "\u{c7}"),
    ("Chi;", "\u{3a7}"),
    ("Dagger;", "\u{2021}"),
    ("Delta;", "\u{394}"),
    ("ETH", "\u{d0}"),
    ("ETH;", "\u{d0}"),
    ("Eacute", "\u{c9}"),
    ("Eacute;", "\u{c9}"),
    ("Ecirc", "\u{ca}"),
    ("Ecirc;", "\u{ca}"),
    ("Egrave", "\u{c8}"),
    ("Egrave;", "\u{c8}"),
    ("Epsilon;", "\u{395}"),
    ("Eta;", "\u{397}"),
    ("Euml", "\u{cb}"),
    ("Euml;", "\u{cb}"),
    ("GT", ">"),
    ("GT;", ">"),
    ("Gamma;", "\u{393}"),
    ("Hat;", "^"),
    ("Iacute", "\u{cd}"),
    ("Iacute;", "\u{cd}"),
    ("Icirc", "\u{ce}"),
    ("Icirc;", "\u{ce}"),
    ("Igrave", "\u{cc}"),
    ("Igrave;", "\u{cc}"),
    ("Iota;", "\u{399}"),
    ("Iuml", "\u{cf}"),
    ("Iuml;", "\u{cf}"),
    ("Kappa;", "\u{39a}"),
    ("LT", "<"),
    ("LT;", "<"),
    ("Lambda;", "\u{39b}"),
    ("Mu;", "\u{39c}"),
    ("NewLine;", "\u{a}"),
    ("Ntilde", "\u{d1}"),
    ("Ntilde;", "\u{d1}"),
    ("Nu;", "\u{39d}"),
    ("OElig;", "\u{152}"),
    ("Oacute", "\u{d3}"),
    ("Oacute;", "\u{d3}"),
    ("Ocirc", "\u{d4}"),
    ("Ocirc;", "\u{d4}"),
    ("Ograve", "\u{d2}"),
    ("Ograve;", "\u{d2}"),
    ("Omega;", "\u{3a9}"),
    ("Omicron;", "\u{39f}"),
    ("Oslash", "\u{d8}"),
    ("Oslash;", "\u{d8}"),
    ("Otilde", "\u{d5}"),
    ("Otilde;", "\u{d5}"),
    ("Ouml", "\u{d6}"),
    ("Ouml;", "\u{d6}"),
    ("Phi;", "\u{3a6}"),
    ("Pi;", "\u{3a0}"),
    ("Prime;", "\u{2033}"),
    ("Psi;", "\u{3a8}"),
    ("QUOT", "\u{22}"),
    ("QUOT;", "\u{22}"),
    ("REG", "\u{ae}"),
    ("REG;", "\u{ae}"),
    ("Rho;", "\u{3a1}"),
    ("Scaron;", "\u{160}"),
    ("Sigma;", "\u{3a3}"),
    ("THORN", "\u{de}"),
    ("THORN;", "\u{de}"),
    ("Tab;", "\u{9}"),
    ("Tau;", "\u{3a4}"),
    ("Theta;", "\u{398}"),
    ("Uacute", "\u{da}"),
    ("Uacute;", "\u{da}"),
    ("Ucirc", "\u{db}"),
    ("Ucirc;", "\u{db}"),
    ("Ugrave", "\u{d9}"),
    ("Ugrave;", "\u{d9}"),
    ("Upsilon;", "\u{3a5}"),
    ("Uuml", "\u{dc}"),
    ("Uuml;", "\u{dc}"),
    ("Xi;", "\u{39e}"),
    ("Yacute", "\u{dd}"),
    ("Yacute;", "\u{dd}"),
    ("Yuml;", "\u{178}"),
    ("Zeta;", "\u{396}"),
    ("aacute", "\u{e1}"),
    ("aacute;", "\u{e1}"),
    ("acirc", "\u{e2}"),
    ("acirc;", "\u{e2}"),
    ("acute", "\u{b4}"),
    ("acute;", "\u{b4}"),
    ("aelig", "\u{e6}"),
    ("aelig;", "\u{e6}"),
    ("agrave", "\u{e0}"),
    ("agrave;", "\u{e0}"),
    ("alpha;", "\u{3b1}"),
    ("amp", "&"),
    ("amp;", "&"),
    ("apos;", "'"),
    ("aring", "\u{e5}"),
    ("aring;", "\u{e5}"),
    ("ast;", "*"),
    ("asymp;", "\u{2248}"),
    ("atilde", "\u{e3}"),
    ("atilde;", "\u{e3}"),
    ("auml", "\u{e4}"),
    ("auml;", "\u{e4}"),
    ("bdquo;", "\u{201e}"),
    ("beta;", "\u{3b2}"),
    ("brvbar", "\u{a6}"),
    ("brvbar;", "\u{a6}"),
    ("bull;", "\u{2022}"),
    ("cap;", "\u{2229}"),
    ("ccedil", "\u{e7}"),
    ("ccedil;", "\u{e7}"),
    ("cedil", "\u{b8}"),
    ("cedil;", "\u{b8}"),
    ("cent", "\u{a2}"),
    ("cent;", "\u{a2}"),
    ("check;", "\u{2713}"),
    ("chi;", "\u{3c7}"),
    ("circ;", "\u{2c6}"),
    ("clubs;", "\u{2663}"),
    ("colon;", ":"),
    ("comma;", ","),
    ("copy", "\u{a9}"),
    ("copy;", "\u{a9}"),
    ("cross;", "\u{2717}"),
    ("cup;", "\u{222a}"),
    ("curren", "\u{a4}"),
    ("curren;", "\u{a4}"),
    ("dagger;", "\u{2020}"),
    ("darr;", "\u{2193}"),
    ("dash;", "\u{2010}"),
    ("deg", "\u{b0}"),
    ("deg;", "\u{b0}"),
    ("delta;", "\u{3b4}"),
    ("diams;", "\u{2666}"),
    ("divide", "\u{f7}"),
    ("divide;", "\u{f7}"),
    ("dollar;", "$"),
    ("eacute", "\u{e9}"),
    ("eacute;", "\u{e9}"),
    ("ecirc", "\u{ea}"),
    ("ecirc;", "\u{ea}"),
    ("egrave", "\u{e8}"),
    ("egrave;", "\u{e8}"),
    ("emsp;", "\u{2003}"),
    ("ensp;", "\u{2002}"),
    ("epsilon;", "\u{3b5}"),
    ("equals;", "="),
    ("eta;", "\u{3b7}"),
    ("eth", "\u{f0}"),
    ("eth;", "\u{f0}"),
    ("euml", "\u{eb}"),
    ("euml;", "\u{eb}"),
    ("euro;", "\u{20ac}"),
    ("excl;", "!"),
    ("fnof;", "\u{192}"),
    ("frac12", "\u{bd}"),
    ("frac12;", "\u{bd}"),
    ("frac14", "\u{bc}"),
    ("frac14;", "\u{bc}"),
    ("frac34", "\u{be}"),
    ("frac34;", "\u{be}"),
    ("frasl;", "\u{2044}"),
    ("gamma;", "\u{3b3}"),
    ("ge;", "\u{2265}"),
    ("grave;", "`"),
    ("gt", ">"),
    ("gt;", ">"),
    ("half;", "\u{bd}"),
    ("harr;", "\u{2194}"),
    ("hearts;", "\u{2665}"),
    ("hellip;", "\u{2026}"),
    ("hyphen;", "\u{2010}"),
    ("iacute", "\u{ed}"),
    ("iacute;", "\u{ed}"),
    ("icirc", "\u{ee}"),
    ("icirc;", "\u{ee}"),
    ("iexcl", "\u{a1}"),
    ("iexcl;", "\u{a1}"),
    ("igrave", "\u{ec}"),
    ("igrave;", "\u{ec}"),
    ("infin;", "\u{221e}"),
    ("int;", "\u{222b}"),
    ("iota;", "\u{3b9}"),
    ("iquest", "\u{bf}"),
    ("iquest;", "\u{bf}"),
    ("isin;", "\u{2208}"),
    ("iuml", "\u{ef}"),
    ("iuml;", "\u{ef}"),
    ("kappa;", "\u{3ba}"),
    ("lambda;", "\u{3bb}"),
    ("laquo", "\u{ab}"),
    ("laquo;", "\u{ab}"),
    ("larr;", "\u{2190}"),
    ("lcub;", "{"),
    ("ldquo;", "\u{201c}"),
    ("le;", "\u{2264}"),
    ("lowast;", "\u{2217}"),
    ("lowbar;", "_"),
    ("lpar;", "("),
    ("lrm;", "\u{200e}"),
    ("lsaquo;", "\u{2039}"),
    ("lsqb;", "["),
    ("lsquo;", "\u{2018}"),
    ("lt", "<"),
    ("lt;", "<"),
    ("macr", "\u{af}"),
    ("macr;", "\u{af}"),
    ("mdash;", "\u{2014}"),
    ("micro", "\u{b5}"),
    ("micro;", "\u{b5}"),
    ("middot", "\u{b7}"),
    ("middot;", "\u{b7}"),
    ("minus;", "\u{2212}"),
    ("mu;", "\u{3bc}"),
    ("nabla;", "\u{2207}"),
    ("nbsp", "\u{a0}"),
    ("nbsp;", "\u{a0}"),
    ("ndash;", "\u{2013}"),
    ("ne;", "\u{2260}"),
    ("not", "\u{ac}"),
    ("not;", "\u{ac}"),
    ("notin;", "\u{2209}"),
    ("ntilde", "\u{f1}"),
    ("ntilde;", "\u{f1}"),
    ("nu;", "\u{3bd}"),
    ("num;", "#"),
    ("oacute", "\u{f3}"),
    ("oacute;", "\u{f3}"),
    ("ocirc", "\u{f4}"),
    ("ocirc;", "\u{f4}"),
    ("oelig;", "\u{153}"),
    ("ograve", "\u{f2}"),
    ("ograve;", "\u{f2}"),
    ("oline;", "\u{203e}"),
    ("omega;", "\u{3c9}"),
    ("omicron;", "\u{3bf}"),
    ("ordf", "\u{aa}"),
    ("ordf;", "\u{aa}"),
    ("ordm", "\u{ba}"),
    ("ordm;", "\u{ba}"),
    ("oslash", "\u{f8}"),
    ("oslash;", "\u{f8}"),
    ("otilde", "\u{f5}"),
    ("otilde;", "\u{f5}"),
    ("ouml", "\u{f6}"),
    ("ouml;", "\u{f6}"),
    ("para", "\u{b6}"),
    ("para;", "\u{b6}"),
    ("part;", "\u{2202}"),
    ("percnt;", "%"),
    ("period;", "."),
    ("permil;", "\u{2030}"),
    ("phi;", "\u{3c6}"),
    ("pi;", "\u{3c0}"),
    ("plus;", "+"),
    ("plusmn", "\u{b1}"),
    ("plusmn;", "\u{b1}"),
    ("pound", "\u{a3}"),
    ("pound;", "\u{a3}"),
    ("prime;", "\u{2032}"),
    ("prod;", "\u{220f}"),
    ("psi;", "\u{3c8}"),
    ("quest;", "?"),
    ("quot", "\u{22}"),
    ("quot;", "\u{22}"),
    ("radic;", "\u{221a}"),
    ("raquo", "\u{bb}"),
    ("raquo;", "\u{bb}"),
    ("rarr;", "\u{2192}"),
    ("rcub;", "}"),
    ("rdquo;", "\u{201d}"),
    ("reg", "\u{ae}"),
    ("reg;", "\u{ae}"),
    ("rho;", "\u{3c1}"),
    ("rlm;", "\u{200f}"),
    ("rpar;", ")"),
    ("rsaquo;", "\u{203a}"),
    ("rsqb;", "]"),
    ("rsquo;", "\u{2019}"),
    ("sbquo;", "\u{201a}"),
    ("scaron;", "\u{161}"),
    ("sect", "\u{a7}"),
    ("sect;", "\u{a7}"),
    ("semi;", ";"),
    ("shy", "\u{ad}"),
    ("shy;", "\u{ad}"),
    ("sigma;", "\u{3c3}"),
    ("sigmaf;", "\u{3c2}"),
    ("sim;", "\u{223c}"),
    ("sol;", "/"),
    ("spades;", "\u{2660}"),
    ("star;", "\u{2606}"),
    ("starf;", "\u{2605}"),
    ("sum;", "\u{2211}"),
    ("sup1", "\u{b9}"),
    ("sup1;", "\u{b9}"),
    ("sup2", "\u{b2}"),
    ("sup2;", "\u{b2}"),
    ("sup3", "\u{b3}"),
    ("sup3;", "\u{b3}"),
    ("szlig", "\u{df}"),
    ("szlig;", "\u{df}"),
    ("tau;", "\u{3c4}"),
    ("there4;", "\u{2234}"),
    ("theta;", "\u{3b8}"),
    ("thinsp;", "\u{2009}"),
    ("thorn", "\u{fe}"),
    ("thorn;", "\u{fe}"),
    ("tilde;", "\u{2dc}"),
    ("times", "\u{d7}"),
    ("times;", "\u{d7}"),
    ("trade;", "\u{2122}"),
    ("uacute", "\u{fa}"),
    ("uacute;", "\u{fa}"),
    ("uarr;", "\u{2191}"),
    ("ucirc", "\u{fb}"),
    ("ucirc;", "\u{fb}"),
    ("ugrave", "\u{f9}"),
    ("ugrave;", "\u{f9}"),
    ("uml", "\u{a8}"),
    ("uml;", "\u{a8}"),
    ("upsilon;", "\u{3c5}"),
    ("uuml", "\u{fc}"),
    ("uuml;", "\u{fc}"),
    ("verbar;", "|"),
    ("xi;", "\u{3be}"),
    ("yacute", "\u{fd}"),
    ("yacute;", "\u{fd}"),
    ("yen", "\u{a5}"),
    ("yen;", "\u{a5}"),
    ("yuml", "\u{ff}"),
    ("yuml;", "\u{ff}"),
    ("zeta;", "\u{3b6}"),
    ("zwj;", "\u{200d}"),
    ("zwnj;", "\u{200c}"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted() {
        assert!(NAMED_ENTITIES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn unescapes_like_python() {
        // Expected values from Python 3's html.unescape.
        let cases = [
            ("a &amp; b", "a & b"),
            ("&lt;b&gt;", "<b>"),
            ("&amp;amp;", "&amp;"),
            ("&ampfoo &amp", "&foo &"),
            ("&notit; &notin;", "¬it; ∉"),
            ("&#39;&#x27;&#X41;&#65", "''AA"),
            (
                "&#128;&#0;&#1;&#xD800;&#1114112;",
                "€\u{fffd}\u{fffd}\u{fffd}",
            ),
            ("&unknownentity; & &#; &#x;", "&unknownentity; & &#; &#x;"),
            ("caf&eacute; na&iuml;ve &nbsp;x", "café naïve \u{a0}x"),
            ("&hellip;&mdash;&ldquo;hi&rdquo;", "…—“hi”"),
        ];
        for (input, expected) in cases {
            assert_eq!(html_unescape(input), expected, "{input}");
        }
    }

    #[test]
    fn cleans_like_wan() {
        assert_eq!(
            clean_prompt("  a   cat\n\t on&nbsp;a  mat  "),
            "a cat on a mat"
        );
        assert_eq!(clean_prompt("&amp;lt;tag&amp;gt;"), "<tag>");
        assert_eq!(
            clean_prompt("“quoted” ‘single’ ﬁsh ＡＢＣ１"),
            "\"quoted\" 'single' fish ABC1"
        );
        assert_eq!(clean_prompt(" \u{3000}\n "), "");
        assert_eq!(clean_prompt("a\u{1c}b"), "a b");
    }
}
