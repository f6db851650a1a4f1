//! Entity addresses in URL paths: `/v1/entities/{type}/{key}/{command}` carries each part as
//! one percent-encoded path segment. Encoding lives here, with the addresses, so the node, its
//! client and the tools spell paths the same way.

/// The bytes a path segment keeps unescaped: RFC 3986's unreserved characters.
pub const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment (an entity type, key or command).
pub fn encode_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreserved_bytes_stay() {
        assert_eq!(encode_segment("a b/c~é-_."), "a%20b%2Fc~%C3%A9-_.");
        assert_eq!(encode_segment("Key1"), "Key1");
    }
}
