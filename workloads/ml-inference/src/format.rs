//! The result object in the codelab's exact text (Python's `str()` of a dict, floats as
//! Python's `repr`) and as JSON.

use serde_json::{Value, json};

/// One image's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Classified {
        predicted_class: usize,
        top_k: Vec<(usize, f32)>,
    },
    Failed(String),
}

/// `np.argmax(logits)` and `np.argsort(logits)[-5:][::-1]` with their scores.
pub fn top_k(logits: &[f32], k: usize) -> Outcome {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    // Ascending by value, ties by index, then the last k reversed, as numpy does it.
    order.sort_by(|&a, &b| logits[a].total_cmp(&logits[b]).then(a.cmp(&b)));
    let top: Vec<(usize, f32)> = order
        .iter()
        .rev()
        .take(k)
        .map(|&i| (i, logits[i]))
        .collect();
    // argmax returns the first maximum.
    let best = logits
        .iter()
        .enumerate()
        .fold(0, |best, (i, v)| if *v > logits[best] { i } else { best });
    Outcome::Classified {
        predicted_class: best,
        top_k: top,
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, fixed notation for
/// 1e-4 ≤ |x| < 1e16, otherwise `1.5e-05` style.
pub fn python_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let abs = x.abs();
    if x == 0.0 || (1e-4..1e16).contains(&abs) {
        let s = format!("{x}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let s = format!("{x:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

/// Python's `repr(str)` (the quoting `str(dict)` uses for strings).
pub fn python_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::from(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `Image: NAME, Response: {...}` lines, each ending in a newline.
pub fn codelab(results: &[(String, Outcome)]) -> String {
    let mut out = String::new();
    for (name, outcome) in results {
        let response = match outcome {
            Outcome::Classified {
                predicted_class,
                top_k,
            } => {
                let preds: Vec<String> = top_k
                    .iter()
                    .map(|(i, s)| {
                        format!(
                            "{{'class_index': {i}, 'score': {}}}",
                            python_float(f64::from(*s))
                        )
                    })
                    .collect();
                format!(
                    "{{'predicted_class': {predicted_class}, 'top_k_predictions': [{}]}}",
                    preds.join(", ")
                )
            }
            Outcome::Failed(e) => format!("{{'error': {}}}", python_str(e)),
        };
        out.push_str(&format!("Image: {name}, Response: {response}\n"));
    }
    out
}

pub fn json(results: &[(String, Outcome)]) -> Value {
    let rows: Vec<Value> = results
        .iter()
        .map(|(name, outcome)| match outcome {
            Outcome::Classified { predicted_class, top_k } => json!({
                "image": name,
                "predicted_class": predicted_class,
                "top_k_predictions": top_k.iter().map(|(i, s)| json!({"class_index": i, "score": s})).collect::<Vec<_>>(),
            }),
            Outcome::Failed(e) => json!({"image": name, "error": e}),
        })
        .collect();
    json!({ "results": rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_repr_does() {
        assert_eq!(python_float(3.0), "3.0");
        assert_eq!(python_float(f64::from(9.123_457_f32)), "9.123456954956055");
        assert_eq!(python_float(-0.5), "-0.5");
        assert_eq!(python_float(1e-5), "1e-05");
        assert_eq!(python_float(-2.5e-7), "-2.5e-07");
        assert_eq!(python_float(1e16), "1e+16");
        assert_eq!(python_float(0.0001), "0.0001");
    }

    #[test]
    fn the_codelab_line_format_is_exact() {
        let r = vec![
            (
                "cat.jpg".to_owned(),
                Outcome::Classified {
                    predicted_class: 3,
                    top_k: vec![(3, 2.5), (1, -1.0)],
                },
            ),
            (
                "bad.jpg".to_owned(),
                Outcome::Failed("cannot decode the image: it's broken".into()),
            ),
        ];
        assert_eq!(
            codelab(&r),
            "Image: cat.jpg, Response: {'predicted_class': 3, 'top_k_predictions': [{'class_index': 3, 'score': 2.5}, {'class_index': 1, 'score': -1.0}]}\n\
             Image: bad.jpg, Response: {'error': \"cannot decode the image: it's broken\"}\n"
        );
    }

    #[test]
    fn top_k_orders_like_numpy_argsort_reversed() {
        let Outcome::Classified {
            predicted_class,
            top_k,
        } = top_k(&[0.1, 5.0, 3.0, 5.0, -1.0, 2.0], 5)
        else {
            panic!()
        };
        assert_eq!(predicted_class, 1, "argmax takes the first maximum");
        assert_eq!(
            top_k.iter().map(|t| t.0).collect::<Vec<_>>(),
            [3, 1, 2, 5, 0]
        );
    }
}
