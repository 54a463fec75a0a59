//! A table printed as Markdown, its columns as wide as their widest cell.

pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
    /// Columns of text, aligned left (the first always is); the others hold numbers.
    text: Vec<usize>,
}

impl Table {
    pub fn new(title: impl Into<String>, header: &[&str]) -> Self {
        Self {
            title: title.into(),
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
            text: vec![0],
        }
    }

    /// Aligns column `i` left, as text.
    pub fn text_column(mut self, i: usize) -> Self {
        self.text.push(i);
        self
    }

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// A line printed under the table.
    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    pub fn print(&self) {
        let columns = self.header.len();
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(columns) {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (i, w) in width.iter().enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = w - c.chars().count().min(*w);
                if self.text.contains(&i) {
                    s.push_str(&format!(" {c}{} |", " ".repeat(pad)));
                } else {
                    s.push_str(&format!(" {}{c} |", " ".repeat(pad)));
                }
            }
            s
        };
        println!();
        println!("{}", self.title);
        println!();
        println!("{}", line(&self.header));
        let mut rule = String::from("|");
        for (i, w) in width.iter().enumerate() {
            rule.push_str(&"-".repeat(w + 1));
            rule.push_str(if self.text.contains(&i) { "-|" } else { ":|" });
        }
        println!("{rule}");
        for r in &self.rows {
            println!("{}", line(r));
        }
        if !self.notes.is_empty() {
            println!();
            for n in &self.notes {
                println!("{n}");
            }
        }
    }
}
