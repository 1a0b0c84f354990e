//! Random rows (column literals with the edge values of each type) and random expressions
//! over them, for the oracle test.

use proptest::prelude::*;

// Random rows.

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    proptest::sample::select(items)
}

fn nullable(s: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Option<String>> {
    prop_oneof![1 => Just(None), 6 => s.prop_map(Some)].boxed()
}

fn int_col(edges: &'static [i64], min: i64, max: i64) -> BoxedStrategy<Option<String>> {
    nullable(prop_oneof![pick(edges), min..=max, -300i64..300].prop_map(|v| v.to_string()))
}

fn numeric_text() -> impl Strategy<Value = String> {
    let edge = pick(&[
        "0",
        "1.5",
        "-2.50",
        "2.5",
        "-2.5",
        "0.5",
        "123456789.123456",
        "0.000001",
        "99999999999999999999.99",
        "NaN",
        "Infinity",
        "-Infinity",
        "9223372036854775807.5",
        "-0.49",
        "1e20",
    ])
    .prop_map(str::to_owned);
    let random = (any::<bool>(), 0u64..10_000_000_000, 0u32..9).prop_map(|(neg, m, scale)| {
        let digits = format!("{m:0>width$}", width = scale as usize + 1);
        let (int, frac) = digits.split_at(digits.len() - scale as usize);
        let sign = if neg { "-" } else { "" };
        if frac.is_empty() {
            format!("{sign}{int}")
        } else {
            format!("{sign}{int}.{frac}")
        }
    });
    prop_oneof![edge, random]
}

fn float_text() -> impl Strategy<Value = String> {
    let edge = pick(&[
        "0",
        "-0",
        "1.5",
        "2.5",
        "-2.5",
        "0.1",
        "1e300",
        "-1e-300",
        "NaN",
        "Infinity",
        "-Infinity",
        "1e15",
        "123456789012345678",
        "4.9e-324",
        "9.3e18",
        "-2147483648.5",
    ])
    .prop_map(str::to_owned);
    let random = (any::<f64>(), -1e6f64..1e6).prop_map(|(a, b)| {
        if a.is_finite() {
            format!("{a:e}")
        } else {
            format!("{b}")
        }
    });
    prop_oneof![edge, random]
}

fn timestamp_text(zone: bool) -> impl Strategy<Value = String> {
    let edge = pick(&[
        "infinity",
        "-infinity",
        "1970-01-01 00:00:00.5",
        "1969-12-31 23:59:59.5",
        "2000-01-01 00:00:00",
        "0044-03-15 12:00:00.25 BC",
        "294276-12-31 23:59:59.999999",
        "4714-11-24 00:00:00 BC",
        "2023-11-14 22:13:20.5",
        "2023-11-14 22:13:19.5",
    ])
    .prop_map(str::to_owned);
    let random = (
        1i64..=9999,
        1u32..=12,
        1u32..=28,
        0u32..24,
        0u32..60,
        0u32..60,
        0u32..1_000_000,
        any::<bool>(),
        0u32..20,
    )
        .prop_map(|(y, mo, d, h, mi, s, us, frac, bc)| {
            let frac = if frac {
                format!(".{us:06}")
            } else {
                String::new()
            };
            let (y, bc) = if bc == 0 {
                (1 + y % 4713, " BC")
            } else {
                (y, "")
            };
            format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{frac}{bc}")
        });
    prop_oneof![edge, random].prop_map(move |t| {
        if zone && t.contains(':') {
            // Postgres reads the zone before a trailing BC too.
            match t.strip_suffix(" BC") {
                Some(rest) => format!("{rest}+00 BC"),
                None => format!("{t}+00"),
            }
        } else {
            t
        }
    })
}

fn date_text() -> impl Strategy<Value = String> {
    let edge = pick(&[
        "infinity",
        "-infinity",
        "5874897-12-31",
        "294276-12-31",
        "294277-01-01",
        "4714-11-24 BC",
        "2000-02-29",
        "1970-01-01",
    ])
    .prop_map(str::to_owned);
    let random =
        (1i64..=9999, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"));
    prop_oneof![edge, random]
}

pub(super) fn row_strategy() -> impl Strategy<Value = Vec<Option<String>>> {
    let text = pick(&[
        "",
        "abc",
        "a'b",
        "5",
        " 12 ",
        "true",
        "yes",
        "é",
        "2024-01-01",
        "ABC",
        "abc ",
        "-7",
        "1.5",
        "NaN",
        "off",
        "9223372036854775808",
    ])
    .prop_map(str::to_owned);
    let chars = pick(&["", "a", "ab  ", "abcd", " x", "5"]).prop_map(str::to_owned);
    let f4 = pick(&[
        "0", "1.5", "0.1", "-2.5", "3.4e38", "NaN", "16777217", "1e-40",
    ])
    .prop_map(str::to_owned);
    let moods = pick(&["sad", "ok", "happy"]).prop_map(str::to_owned);
    let bools = pick(&["t", "f"]).prop_map(str::to_owned);
    vec![
        int_col(
            &[-32768, 32767, 0, -1, 1, 2, 13, 31, 32],
            i16::MIN as i64,
            i16::MAX as i64,
        ),
        int_col(
            &[-2147483648, 2147483647, 0, -1, 1, 2, 31, 32, 33, 64],
            i32::MIN as i64,
            i32::MAX as i64,
        ),
        int_col(
            &[i64::MIN, i64::MAX, 0, -1, 1, 4294967296],
            i64::MIN,
            i64::MAX,
        ),
        int_col(&[0, 8192, 4, 8196, -1, -2147483648, 1024, 1023], 0, 1 << 20),
        nullable(numeric_text()),
        nullable(float_text()),
        nullable(f4),
        nullable(bools),
        nullable(text),
        nullable(chars),
        nullable(timestamp_text(true)),
        nullable(timestamp_text(false)),
        nullable(date_text()),
        nullable(moods),
    ]
}

// ---------------------------------------------------------------------------------------
// Random expressions.

/// SplitMix64: a seeded stream of choices for the expression generator.
pub(super) struct Gen(pub(super) u64);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum K {
    Int,
    Num,
    Flt,
    Bool,
    Text,
    Time,
}

const KINDS: [K; 6] = [K::Int, K::Num, K::Flt, K::Bool, K::Text, K::Time];

impl Gen {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn one<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn kind(&mut self) -> K {
        KINDS[self.below(KINDS.len())]
    }

    /// A numeric-category kind, for mixed arithmetic and comparisons.
    fn number_kind(&mut self) -> K {
        [K::Int, K::Int, K::Num, K::Flt][self.below(4)]
    }

    /// An expression of kind `k`; `top`: never a bare literal (its type would be unknown).
    fn expr(&mut self, k: K, depth: u32, top: bool) -> String {
        if depth == 0 || (!top && self.below(10) < 3) {
            return self.leaf(k);
        }
        let d = depth - 1;
        match k {
            K::Int => self.int(d),
            K::Num => self.num(d),
            K::Flt => self.flt(d),
            K::Bool => self.boolean(d),
            K::Text => self.text(d),
            K::Time => self.time(d),
        }
    }

    fn e(&mut self, k: K, d: u32) -> String {
        self.expr(k, d, false)
    }

    fn leaf(&mut self, k: K) -> String {
        let s = match k {
            K::Int => self.one(&[
                "{i2}",
                "{i4}",
                "{i8}",
                "{fl}",
                "{i4}",
                "{fl}",
                "0",
                "1",
                "-1",
                "2",
                "7",
                "13",
                "31",
                "32",
                "33",
                "63",
                "255",
                "32767",
                "-32768",
                "2147483647",
                "-2147483648",
                "2147483648",
                "9223372036854775807",
                "-9223372036854775808",
                "5::int2",
                "(-3)::smallint",
                "'7'",
            ]),
            K::Num => self.one(&[
                "{n}",
                "{n}",
                "1.5",
                "2.50",
                "0.001",
                "-3.14159",
                "1e3",
                "123456789.123456789",
                "'NaN'::numeric",
                "'Infinity'::numeric",
                "0.5",
                "-0.5",
                "99999999999999999999",
                "1e-20",
            ]),
            K::Flt => self.one(&[
                "{f8}",
                "{f8}",
                "{f4}",
                "1.5::float8",
                "'NaN'::float8",
                "'-Infinity'::float8",
                "1e300::float8",
                "0.1::float8",
                "2.5::float8",
                "(-2.5)::float8",
                "'1e-300'::float8",
                "3::real",
                "0.1::real",
            ]),
            K::Bool => self.one(&["{b}", "{b}", "true", "false", "NULL::bool"]),
            K::Text => self.one(&[
                "{t}",
                "{t}",
                "{c}",
                "{e}::text",
                "'abc'",
                "''",
                "'5'",
                "'ab'",
                "'ABC'",
                "'t'",
            ]),
            K::Time => self.one(&[
                "{ts}",
                "{tsn}",
                "{d}",
                "{ts}",
                "'2024-01-01 00:00:00+00'::timestamptz",
                "date '2000-02-29'",
                "'infinity'::timestamp",
                "NULL::date",
                "timestamp '2023-11-14 22:13:20.5'",
            ]),
        };
        s.to_owned()
    }

    /// An integer leaf with an optional prefix operator and cast, unparenthesised.
    fn int_term(&mut self) -> String {
        let prefix = self.one(&["", "", "", "- ", "~ ", "+ "]);
        let cast = self.one(&["", "", "", "", "::int8", "::int2", "::numeric"]);
        let leaf = self.leaf(K::Int);
        format!("{prefix}{leaf}{cast}")
    }

    /// Operators of several precedence levels without parentheses, to test grouping.
    fn int_chain(&mut self) -> String {
        let mut s = self.int_term();
        for _ in 0..1 + self.below(4) {
            let op = self.one(&["+", "-", "*", "/", "%", "&", "|", "#", "<<", ">>"]);
            s = format!("{s} {op} {}", self.int_term());
        }
        s
    }

    /// Comparisons, IS tests, NOT, AND, OR without parentheses.
    fn bool_chain(&mut self) -> String {
        let mut s = String::new();
        for i in 0..1 + self.below(4) {
            if i > 0 {
                s.push_str(self.one(&[" AND ", " OR "]));
            }
            if self.below(4) == 0 {
                s.push_str("NOT ");
            }
            let term = match self.below(6) {
                0 => "{b}".to_owned(),
                1 => format!("{} IS NULL", self.int_chain()),
                2 => format!("{} IS DISTINCT FROM {}", self.int_chain(), self.int_chain()),
                3 => format!("{{b}} IS {}", self.one(&["TRUE", "NOT FALSE", "UNKNOWN"])),
                _ => {
                    let op = self.one(&["=", "<>", "<", "<=", ">", ">="]);
                    format!("{} {op} {}", self.int_chain(), self.int_chain())
                }
            };
            s.push_str(&term);
        }
        s
    }

    fn int(&mut self, d: u32) -> String {
        if self.below(6) == 0 {
            return format!("({})", self.int_chain());
        }
        match self.below(11) {
            0 | 1 => {
                let op = self.one(&["+", "-", "*", "/", "%", "&", "|", "#"]);
                format!("({} {op} {})", self.e(K::Int, d), self.e(K::Int, d))
            }
            2 => {
                let op = self.one(&["<<", ">>"]);
                let count = self.one(&[
                    "0", "1", "2", "13", "15", "16", "31", "32", "33", "63", "64", "-1", "100",
                    "{i2}", "{i4}",
                ]);
                format!("({} {op} {count})", self.e(K::Int, d))
            }
            3 => {
                let op = self.one(&["- ", "~", "+"]);
                format!("({op}{})", self.e(K::Int, d))
            }
            4 => {
                let ty = self.one(&[
                    "int2", "int4", "int8", "smallint", "integer", "bigint", "int",
                ]);
                let src = [K::Int, K::Num, K::Flt, K::Text, K::Int][self.below(5)];
                format!("({})::{ty}", self.e(src, d))
            }
            5 => format!("extract(epoch from {})::bigint", self.e(K::Time, d)),
            6 => self.variadic(K::Int, d),
            7 => self.case(K::Int, d),
            8 => format!("({})::int", self.e(K::Bool, d)),
            _ => format!("CAST({} AS bigint)", self.e(K::Num, d)),
        }
    }

    fn num(&mut self, d: u32) -> String {
        match self.below(7) {
            0 | 1 => {
                let op = self.one(&["+", "-", "*", "/", "%"]);
                let (a, b) = if self.below(2) == 0 {
                    (K::Num, K::Int)
                } else {
                    (K::Int, K::Num)
                };
                let b = if self.below(2) == 0 { b } else { K::Num };
                format!("({} {op} {})", self.e(a, d), self.e(b, d))
            }
            2 => format!("(- {})", self.e(K::Num, d)),
            3 => format!("extract(epoch from {})", self.e(K::Time, d)),
            4 => {
                let src = [K::Int, K::Flt, K::Text, K::Num][self.below(4)];
                format!("({})::numeric", self.e(src, d))
            }
            5 => self.variadic(K::Num, d),
            _ => self.case(K::Num, d),
        }
    }

    fn flt(&mut self, d: u32) -> String {
        match self.below(7) {
            0 | 1 => {
                let op = self.one(&["+", "-", "*", "/"]);
                let other = self.number_kind();
                format!("({} {op} {})", self.e(K::Flt, d), self.e(other, d))
            }
            2 => format!("(- {})", self.e(K::Flt, d)),
            3 => {
                let ty = self.one(&["float8", "real", "double precision", "float4"]);
                let src = [K::Int, K::Num, K::Text, K::Flt][self.below(4)];
                format!("({})::{ty}", self.e(src, d))
            }
            4 => format!("date_part('epoch', {})", self.e(K::Time, d)),
            5 => self.variadic(K::Flt, d),
            _ => self.case(K::Flt, d),
        }
    }

    fn boolean(&mut self, d: u32) -> String {
        if self.below(6) == 0 {
            return format!("({})", self.bool_chain());
        }
        match self.below(9) {
            0..=2 => {
                let op = self.one(&["=", "<>", "!=", "<", "<=", ">", ">="]);
                let (a, b) = match self.below(4) {
                    0 => (self.number_kind(), self.number_kind()),
                    _ => {
                        let k = self.kind();
                        (k, k)
                    }
                };
                format!("({} {op} {})", self.e(a, d), self.e(b, d))
            }
            3 => {
                let op = self.one(&["AND", "OR", "and", "or"]);
                format!("({} {op} {})", self.e(K::Bool, d), self.e(K::Bool, d))
            }
            4 => format!("(NOT {})", self.e(K::Bool, d)),
            5 => {
                let k = self.kind();
                let test = self.one(&["IS NULL", "IS NOT NULL", "ISNULL", "NOTNULL"]);
                format!("({} {test})", self.e(k, d))
            }
            6 => {
                let k = self.kind();
                let not = self.one(&["", "NOT "]);
                format!("({} IS {not}DISTINCT FROM {})", self.e(k, d), self.e(k, d))
            }
            7 => {
                let test = self.one(&[
                    "IS TRUE",
                    "IS NOT TRUE",
                    "IS FALSE",
                    "IS NOT FALSE",
                    "IS UNKNOWN",
                    "IS NOT UNKNOWN",
                ]);
                format!("({} {test})", self.e(K::Bool, d))
            }
            _ => match self.below(3) {
                0 => format!("({})::boolean", self.e(K::Text, d)),
                1 => format!("(({})::int4)::bool", self.e(K::Int, d)),
                _ => self.case(K::Bool, d),
            },
        }
    }

    fn text(&mut self, d: u32) -> String {
        match self.below(5) {
            0 | 1 => {
                let k = self.kind();
                let ty = self.one(&["text", "text", "varchar"]);
                format!("({})::{ty}", self.e(k, d))
            }
            2 => self.variadic(K::Text, d),
            3 => format!("NULLIF({}, {})", self.e(K::Text, d), self.leaf(K::Text)),
            _ => self.case(K::Text, d),
        }
    }

    fn time(&mut self, d: u32) -> String {
        match self.below(4) {
            0 => self.variadic(K::Time, d),
            1 => {
                let ty = self.one(&[
                    "date",
                    "timestamp",
                    "timestamptz",
                    "timestamp with time zone",
                ]);
                format!("({})::{ty}", self.e(K::Time, d))
            }
            2 => self.case(K::Time, d),
            _ => self.leaf(K::Time),
        }
    }

    fn variadic(&mut self, k: K, d: u32) -> String {
        let f = self.one(&[
            "GREATEST", "LEAST", "COALESCE", "greatest", "coalesce", "NULLIF",
        ]);
        let n = if f == "NULLIF" { 2 } else { 1 + self.below(3) };
        let args: Vec<String> = (0..n).map(|_| self.e(k, d)).collect();
        format!("{f}({})", args.join(", "))
    }

    fn case(&mut self, k: K, d: u32) -> String {
        if self.below(3) == 0 {
            // Simple CASE.
            let ok = [K::Int, K::Text, K::Num, K::Time, K::Bool][self.below(5)];
            let (w1, w2) = (self.leaf(ok), self.leaf(ok));
            format!(
                "CASE {} WHEN {w1} THEN {} WHEN {w2} THEN {} ELSE {} END",
                self.e(ok, d),
                self.e(k, d),
                self.e(k, d),
                self.e(k, d)
            )
        } else if self.below(2) == 0 {
            format!(
                "CASE WHEN {} THEN {} ELSE {} END",
                self.e(K::Bool, d),
                self.e(k, d),
                self.e(k, d)
            )
        } else {
            format!("CASE WHEN {} THEN {} END", self.e(K::Bool, d), self.e(k, d))
        }
    }
}

/// `n` random expressions from `seed`.
pub(super) fn expressions(seed: u64, n: usize) -> Vec<String> {
    let mut g = Gen(seed);
    (0..n)
        .map(|_| {
            let k = g.kind();
            let depth = 1 + g.below(4) as u32;
            g.expr(k, depth, true)
        })
        .collect()
}
