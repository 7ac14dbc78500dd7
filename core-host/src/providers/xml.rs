//! A small element tree over quick-xml, for the ISO 20022 messages: read a
//! document into [`Element`]s (local names, namespace declared on the root
//! kept as an attribute, text with entities resolved), and write one back
//! with escaping. No DTDs and no external entities are ever read.

use quick_xml::Reader;
use quick_xml::events::Event;
use std::fmt::Write as _;

/// Largest document read, in bytes.
pub const DOCUMENT_LEN_MAX_BYTES: usize = 1024 * 1024;
/// Deepest nesting read.
pub const DEPTH_MAX: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    /// Local name (no prefix).
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub fn new(name: &str) -> Element {
        Element {
            name: name.to_string(),
            ..Element::default()
        }
    }

    /// A leaf with text.
    pub fn leaf(name: &str, text: impl Into<String>) -> Element {
        Element {
            name: name.to_string(),
            text: text.into(),
            ..Element::default()
        }
    }

    pub fn attr(mut self, name: &str, value: impl Into<String>) -> Element {
        self.attributes.push((name.to_string(), value.into()));
        self
    }

    pub fn child(mut self, child: Element) -> Element {
        self.children.push(child);
        self
    }

    pub fn children(mut self, children: impl IntoIterator<Item = Element>) -> Element {
        self.children.extend(children);
        self
    }

    /// The first child named `name`.
    pub fn get(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The element at a path of child names (`["GrpHdr", "MsgId"]`).
    pub fn at(&self, path: &[&str]) -> Option<&Element> {
        path.iter().try_fold(self, |e, name| e.get(name))
    }

    /// The trimmed text at a path, if the element is there.
    pub fn text_at(&self, path: &[&str]) -> Option<&str> {
        self.at(path).map(|e| e.text.trim())
    }

    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The document as UTF-8 XML with a declaration.
    pub fn to_document(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        self.write(&mut out, 0);
        out
    }

    fn write(&self, out: &mut String, depth: usize) {
        let indent = "  ".repeat(depth);
        let _ = write!(out, "{indent}<{}", self.name);
        for (k, v) in &self.attributes {
            let _ = write!(out, " {k}=\"{}\"", quick_xml::escape::escape(v.as_str()));
        }
        if self.children.is_empty() {
            let _ = writeln!(
                out,
                ">{}</{}>",
                quick_xml::escape::escape(self.text.as_str()),
                self.name
            );
            return;
        }
        out.push_str(">\n");
        for child in &self.children {
            child.write(out, depth + 1);
        }
        let _ = writeln!(out, "{indent}</{}>", self.name);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed XML: {0}")]
pub struct XmlError(pub String);

fn local(name: &str) -> String {
    name.rsplit(':').next().unwrap_or(name).to_string()
}

fn predefined(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}

/// Reads a whole document into its root element.
pub fn parse(document: &str) -> Result<Element, XmlError> {
    if document.len() > DOCUMENT_LEN_MAX_BYTES {
        return Err(XmlError(format!("document is over {DOCUMENT_LEN_MAX_BYTES} bytes")));
    }
    let mut reader = Reader::from_str(document);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let err = |e: quick_xml::Error| XmlError(e.to_string());
    loop {
        let event = reader.read_event().map_err(err)?;
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(start) | Event::Empty(start) => {
                if root.is_some() && stack.is_empty() {
                    return Err(XmlError("content after the root element".into()));
                }
                stack.push(open(&start)?);
                if stack.len() > DEPTH_MAX {
                    return Err(XmlError(format!("nesting deeper than {DEPTH_MAX}")));
                }
                if empty {
                    close(&mut stack, &mut root)?;
                }
            }
            Event::End(_) => close(&mut stack, &mut root)?,
            Event::Text(text) => {
                let content = text.xml_content(quick_xml::XmlVersion::Implicit1_0);
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err(XmlError("text outside the root element".into())),
                }
            }
            Event::CData(data) => {
                let content = String::from_utf8(data.into_inner().into_owned().into_bytes())
                    .map_err(|_| XmlError("CDATA is not UTF-8".into()))?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&content);
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(err)? {
                    Some(c) => c,
                    None => {
                        let name = std::str::from_utf8(reference.as_ref().as_bytes())
                            .map_err(|_| XmlError("an entity name is not UTF-8".into()))?;
                        predefined(name).ok_or_else(|| XmlError(format!("unknown entity &{name};")))?
                    }
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push(resolved);
                }
            }
            Event::DocType(_) => return Err(XmlError("a DOCTYPE is not allowed".into())),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError("the document ends inside an element".into()));
    }
    root.ok_or_else(|| XmlError("no root element".into()))
}

fn open(start: &quick_xml::events::BytesStart<'_>) -> Result<Element, XmlError> {
    let mut element = Element::new(&local(start.name().as_ref()));
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| XmlError(e.to_string()))?;
        let key = attribute.key.as_ref().to_string();
        let value = attribute
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| XmlError(e.to_string()))?
            .into_owned();
        element.attributes.push((key, value));
    }
    Ok(element)
}

fn close(stack: &mut Vec<Element>, root: &mut Option<Element>) -> Result<(), XmlError> {
    let done = stack
        .pop()
        .ok_or_else(|| XmlError("an end tag closes nothing".into()))?;
    match stack.last_mut() {
        Some(parent) => parent.children.push(done),
        None => *root = Some(done),
    }
    Ok(())
}
