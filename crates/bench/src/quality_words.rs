//! Word lists of the recognition-quality evaluation (`callers-bench quality`), beside those of
//! `words.rs` it shares (German first names, the hundred commonest surnames, company words).
//!
//! Sources, honestly: the German surnames are the order of de.wikipedia's "Liste der häufigsten
//! Familiennamen in Deutschland" (phone-book counts), weighted here by a Zipf law fitted by eye
//! to those counts (rank^-0.65: Müller 1, Schmidt 0.64, rank 100 about 0.05), not the counts
//! themselves. Foreign names are the commonest names of each country as the national
//! statistics offices' lists give them, typed from memory. The compound first names and
//! everything else are plausible, not counted.

/// German double first names, with gender: written with a hyphen or, as many are, a space.
pub const DOUBLE_FIRST_NAMES: &[(&str, bool)] = &[
    ("Karl-Heinz", false),
    ("Heinz-Werner", false),
    ("Hans-Jürgen", false),
    ("Hans-Peter", false),
    ("Klaus-Dieter", false),
    ("Hans Jörg", false),
    ("Jan-Philipp", false),
    ("Hans-Georg", false),
    ("Karl Friedrich", false),
    ("Franz-Josef", false),
    ("Ernst August", false),
    ("Marc-André", false),
    ("Anna-Lena", true),
    ("Marie-Luise", true),
    ("Eva-Maria", true),
    ("Ann-Kathrin", true),
    ("Anne Marie", true),
    ("Anne-Sophie", true),
    ("Lisa-Marie", true),
    ("Hans-Dieter", false),
    ("Maria Theresia", true),
    ("Sophie-Charlotte", true),
];

/// Families of spellings that sound alike and are all real surnames: a caller who says "Mayer"
/// may be Meier. The compound tail "-meier" is varied the same way (see `phonetic_variants`).
pub const PHONETIC_FAMILIES: &[&[&str]] = &[
    &["Meier", "Meyer", "Maier", "Mayer"],
    &["Schmidt", "Schmitt", "Schmid"],
    &["Hofmann", "Hoffmann"],
    &["Fischer", "Fisher"],
    &["Becker", "Bäcker"],
    &["Wolf", "Wolff"],
    &["Vogt", "Voigt"],
    &["Schulz", "Schultz"],
    &["Herrmann", "Hermann"],
    &["Kraus", "Krauss"],
    &["Lorenz", "Lorentz"],
    &["Seidel", "Seidl"],
];

/// Tails of compound surnames that are spelling variants of one another (Brandmeier,
/// Brandmayer).
pub const MEIER_TAILS: &[&str] = &["meier", "mayer", "maier", "meyer", "mayr"];

/// Words that end three-word company names ("Henk Logistik Service GmbH").
pub const COMPANY_SUFFIXES: &[&str] = &[
    "Service",
    "Technik",
    "Partner",
    "Systeme",
    "Nord",
    "Süd",
    "Handel",
    "Management",
    "Solutions",
    "Gruppe",
];

/// Legal forms, as often written (an empty one: many small firms give none).
pub const QUALITY_LEGAL_FORMS: &[&str] = &[
    "GmbH",
    "GmbH",
    "GmbH",
    "GmbH & Co. KG",
    "AG",
    "KG",
    "e.K.",
    "OHG",
    "UG (haftungsbeschränkt)",
    "GbR",
    "",
];

/// (first names with gender, surnames) of one country of origin.
pub struct ForeignNames {
    pub origin: &'static str,
    pub first: &'static [(&'static str, bool)],
    pub last: &'static [&'static str],
}

pub const TURKISH: ForeignNames = ForeignNames {
    origin: "Turkish",
    first: &[
        ("Mehmet", false),
        ("Ahmet", false),
        ("Mustafa", false),
        ("Ali", false),
        ("Hüseyin", false),
        ("Hasan", false),
        ("İbrahim", false),
        ("Murat", false),
        ("Emre", false),
        ("Ayşe", true),
        ("Fatma", true),
        ("Emine", true),
        ("Zeynep", true),
        ("Elif", true),
        ("Hatice", true),
        ("Özlem", true),
    ],
    last: &[
        "Yılmaz",
        "Kaya",
        "Demir",
        "Şahin",
        "Çelik",
        "Yıldız",
        "Yıldırım",
        "Öztürk",
        "Aydın",
        "Özdemir",
        "Arslan",
        "Doğan",
        "Kılıç",
        "Aslan",
        "Çetin",
        "Kara",
        "Koç",
        "Kurt",
        "Özkan",
        "Şimşek",
    ],
};

pub const POLISH: ForeignNames = ForeignNames {
    origin: "Polish",
    first: &[
        ("Piotr", false),
        ("Krzysztof", false),
        ("Andrzej", false),
        ("Tomasz", false),
        ("Paweł", false),
        ("Michał", false),
        ("Marcin", false),
        ("Łukasz", false),
        ("Katarzyna", true),
        ("Małgorzata", true),
        ("Agnieszka", true),
        ("Magdalena", true),
        ("Joanna", true),
        ("Ewa", true),
    ],
    // Masculine forms; women's -ski/-cki become -ska/-cka.
    last: &[
        "Nowak",
        "Kowalski",
        "Wiśniewski",
        "Wójcik",
        "Kowalczyk",
        "Kamiński",
        "Lewandowski",
        "Zieliński",
        "Szymański",
        "Woźniak",
        "Dąbrowski",
        "Kozłowski",
        "Jankowski",
        "Mazur",
        "Kwiatkowski",
        "Krawczyk",
        "Piotrowski",
        "Grabowski",
    ],
};

pub const ITALIAN: ForeignNames = ForeignNames {
    origin: "Italian",
    first: &[
        ("Giuseppe", false),
        ("Giovanni", false),
        ("Antonio", false),
        ("Mario", false),
        ("Francesco", false),
        ("Luigi", false),
        ("Alessandro", false),
        ("Maria", true),
        ("Giulia", true),
        ("Francesca", true),
        ("Chiara", true),
        ("Rosa", true),
    ],
    last: &[
        "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino",
        "Greco", "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Costa", "Giordano", "Rizzo",
        "Lombardi", "Moretti",
    ],
};

pub const ENGLISH: ForeignNames = ForeignNames {
    origin: "English",
    first: &[
        ("James", false),
        ("John", false),
        ("Robert", false),
        ("David", false),
        ("William", false),
        ("Richard", false),
        ("George", false),
        ("Mary", true),
        ("Jennifer", true),
        ("Elizabeth", true),
        ("Sarah", true),
        ("Margaret", true),
    ],
    last: &[
        "Smith", "Johnson", "Williams", "Jones", "Taylor", "Davies", "Wilson", "Evans", "Roberts",
        "Walker", "Wright", "Robinson", "Thompson", "White", "Hughes", "Edwards", "Green", "Hall",
        "Wood", "Jackson",
    ],
};

/// Names kept out of the population, for callers who are not in the account. Whatever of them
/// happens to lie within two edits of a population surname is skipped at run time.
pub const ABSENT_FIRST_NAMES: &[&str] = &[
    "Jordan",
    "Emily",
    "Olivia",
    "Noah",
    "Harry",
    "Chloe",
    "Ethan",
    "Jessica",
    "Liam",
    "Gerhard",
    "Waltraud",
    "Reinhold",
    "Edeltraud",
    "Burkhard",
    "Irmgard",
    "Kemal",
    "Serkan",
    "Dariusz",
    "Bożena",
    "Salvatore",
    "Lorenzo",
];

pub const ABSENT_SURNAMES: &[&str] = &[
    "Young",
    "Brown",
    "Clarke",
    "Turner",
    "Cooper",
    "Morgan",
    "Harrison",
    "Mitchell",
    "Fletcher",
    "Güneş",
    "Tekin",
    "Aksoy",
    "Erdoğan",
    "Polat",
    "Wróbel",
    "Pawlak",
    "Michalski",
    "Sikorski",
    "Fontana",
    "Santoro",
    "Caruso",
    "Marchetti",
    "Kuschinsky",
    "Pfannkuch",
    "Wiegand",
    "Quandt",
    "Tschirner",
    "Zschoche",
    "Ebeling",
    "Gottschalk",
    "Rademacher",
    "Dankwart",
    "Liebscher",
    "Pfitzner",
    "Ulbricht",
    "Nüßlein",
];
