import FoundationEssentials

/// Encodes a state record (a container's `container.json`, a volume's `volume.json`) to the
/// bytes `JSONEncoder` writes with `.sortedKeys` and `.iso8601` dates, without its cost on a
/// process's first record.
///
/// `JSONEncoder` asks of every value's type whether it is a string-keyed dictionary (a cast to
/// a private protocol). The first time a process asks that of a type, the Swift runtime walks
/// every protocol conformance record of the binary (about 8 000 in `berth`): one walk per type
/// of a record, which made the first `container.json` of a `berth run` about 10 M instructions,
/// a fifth of the CLI's (Performance.md, "CLI start"). This encoder tells types apart by
/// identity only (`T.self == Date.self`), which costs no walk; a record costs what its values do.
///
/// It covers what records hold: strings, numbers, booleans, optionals, arrays, sets,
/// dictionaries, nested types and `Date` (ISO 8601, as `.iso8601`). `Data`, `URL` and `Decimal`,
/// which `JSONEncoder` special-cases, would come out in their plain `Codable` form, so records
/// hold none of them (the tests compare this encoder's output with `JSONEncoder`'s).
package enum RecordEncoder {
    /// The JSON text of `value`.
    ///
    /// - Throws: `EncodingError.invalidValue` for a NaN or infinite number (as `JSONEncoder`
    ///   does by default), or what the value's own `encode(to:)` throws.
    package static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let root = RecordNode(codingPath: [])
        try root.encode(value)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4096)
        root.write(into: &bytes)
        return bytes
    }
}

/// One JSON value of the record being encoded; also the `Encoder` that fills it.
private final class RecordNode: Encoder {
    private enum Kind { case unset, literal, array, object }
    private var kind = Kind.unset
    /// The JSON text of a literal (a number, `true`, `null`, a quoted string).
    private var literal: [UInt8] = []
    private var elements: [RecordNode] = []
    private var members: [String: RecordNode] = [:]

    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(codingPath: [any CodingKey]) {
        self.codingPath = codingPath
    }

    func encode<T: Encodable>(_ value: T) throws {
        if T.self == Date.self {
            setString((value as! Date).formatted(.iso8601))
        } else {
            try value.encode(to: self)
        }
    }

    // MARK: Building

    func setLiteral(_ text: String) {
        kind = .literal
        literal = Array(text.utf8)
    }

    func setInteger(_ value: some BinaryInteger) {
        setLiteral(String(value))
    }

    /// As `JSONEncoder`: the shortest text that reads back the same, without a trailing `.0`.
    func setFloat<F: BinaryFloatingPoint & CustomStringConvertible>(_ value: F) throws {
        guard value.isFinite else {
            throw EncodingError.invalidValue(
                value, EncodingError.Context(codingPath: codingPath, debugDescription: "Unable to encode \(value) directly in JSON."))
        }
        var text = value.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        setLiteral(text)
    }

    func setString(_ text: String) {
        kind = .literal
        literal.removeAll(keepingCapacity: true)
        Self.appendQuoted(text, to: &literal)
    }

    /// The member `key` of this object, new (an object member encoded twice keeps the last).
    func member(_ key: some CodingKey) -> RecordNode {
        becomeObject()
        let node = RecordNode(codingPath: codingPath + [key])
        members[key.stringValue] = node
        return node
    }

    /// A new last element of this array.
    func appendElement() -> RecordNode {
        becomeArray()
        let node = RecordNode(codingPath: codingPath + [IndexKey(intValue: elements.count)])
        elements.append(node)
        return node
    }

    func becomeObject() {
        kind = .object
    }

    func becomeArray() {
        kind = .array
    }

    var count: Int { elements.count }

    // MARK: Encoder

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        becomeObject()
        return KeyedEncodingContainer(KeyedRecordContainer<Key>(node: self))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        becomeArray()
        return UnkeyedRecordContainer(node: self)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleRecordContainer(node: self)
    }

    // MARK: Writing

    /// Appends the JSON text: members in the order of their keys' UTF-8 bytes, no whitespace,
    /// `/` escaped (`JSONEncoder`'s defaults with `.sortedKeys`). A value that asked for no
    /// container is an empty object, as in `JSONEncoder`.
    func write(into bytes: inout [UInt8]) {
        switch kind {
        case .literal:
            bytes += literal
        case .array:
            bytes.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                element.write(into: &bytes)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object, .unset:
            bytes.append(UInt8(ascii: "{"))
            let sorted = members.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
            for (index, (key, value)) in sorted.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                Self.appendQuoted(key, to: &bytes)
                bytes.append(UInt8(ascii: ":"))
                value.write(into: &bytes)
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }

    private static func appendQuoted(_ text: String, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): bytes += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case UInt8(ascii: "/"): bytes += [UInt8(ascii: "\\"), UInt8(ascii: "/")]
            case 0x08: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "b")]
            case 0x0C: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "f")]
            case 0x0A: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case 0x0D: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case 0x09: bytes += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}

/// The coding-path key of an array element.
private struct IndexKey: CodingKey {
    var stringValue: String { "Index \(intValue ?? 0)" }
    var intValue: Int?
    init(intValue: Int) { self.intValue = intValue }
    init?(stringValue: String) { nil }
}

private struct KeyedRecordContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let node: RecordNode
    var codingPath: [any CodingKey] { node.codingPath }

    mutating func encodeNil(forKey key: Key) throws { node.member(key).setLiteral("null") }
    mutating func encode(_ value: Bool, forKey key: Key) throws { node.member(key).setLiteral(value ? "true" : "false") }
    mutating func encode(_ value: String, forKey key: Key) throws { node.member(key).setString(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { try node.member(key).setFloat(value) }
    mutating func encode(_ value: Float, forKey key: Key) throws { try node.member(key).setFloat(value) }
    mutating func encode(_ value: Int, forKey key: Key) throws { node.member(key).setInteger(value) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { node.member(key).setInteger(value) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { node.member(key).setInteger(value) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { node.member(key).setInteger(value) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { node.member(key).setInteger(value) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { node.member(key).setInteger(value) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { node.member(key).setInteger(value) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { node.member(key).setInteger(value) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { node.member(key).setInteger(value) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { node.member(key).setInteger(value) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try node.member(key).encode(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
        -> KeyedEncodingContainer<NestedKey>
    {
        node.member(key).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        node.member(key).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { node.member(SuperKey.super) }
    mutating func superEncoder(forKey key: Key) -> any Encoder { node.member(key) }
}

/// The key `superEncoder()` encodes under, as in `JSONEncoder`.
private enum SuperKey: String, CodingKey {
    case `super`
}

private struct UnkeyedRecordContainer: UnkeyedEncodingContainer {
    let node: RecordNode
    var codingPath: [any CodingKey] { node.codingPath }
    var count: Int { node.count }

    mutating func encodeNil() throws { node.appendElement().setLiteral("null") }
    mutating func encode(_ value: Bool) throws { node.appendElement().setLiteral(value ? "true" : "false") }
    mutating func encode(_ value: String) throws { node.appendElement().setString(value) }
    mutating func encode(_ value: Double) throws { try node.appendElement().setFloat(value) }
    mutating func encode(_ value: Float) throws { try node.appendElement().setFloat(value) }
    mutating func encode(_ value: Int) throws { node.appendElement().setInteger(value) }
    mutating func encode(_ value: Int8) throws { node.appendElement().setInteger(value) }
    mutating func encode(_ value: Int16) throws { node.appendElement().setInteger(value) }
    mutating func encode(_ value: Int32) throws { node.appendElement().setInteger(value) }
    mutating func encode(_ value: Int64) throws { node.appendElement().setInteger(value) }
    mutating func encode(_ value: UInt) throws { node.appendElement().setInteger(value) }
    mutating func encode(_ value: UInt8) throws { node.appendElement().setInteger(value) }
    mutating func encode(_ value: UInt16) throws { node.appendElement().setInteger(value) }
    mutating func encode(_ value: UInt32) throws { node.appendElement().setInteger(value) }
    mutating func encode(_ value: UInt64) throws { node.appendElement().setInteger(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try node.appendElement().encode(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        node.appendElement().container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { node.appendElement().unkeyedContainer() }
    mutating func superEncoder() -> any Encoder { node.appendElement() }
}

private struct SingleRecordContainer: SingleValueEncodingContainer {
    let node: RecordNode
    var codingPath: [any CodingKey] { node.codingPath }

    mutating func encodeNil() throws { node.setLiteral("null") }
    mutating func encode(_ value: Bool) throws { node.setLiteral(value ? "true" : "false") }
    mutating func encode(_ value: String) throws { node.setString(value) }
    mutating func encode(_ value: Double) throws { try node.setFloat(value) }
    mutating func encode(_ value: Float) throws { try node.setFloat(value) }
    mutating func encode(_ value: Int) throws { node.setInteger(value) }
    mutating func encode(_ value: Int8) throws { node.setInteger(value) }
    mutating func encode(_ value: Int16) throws { node.setInteger(value) }
    mutating func encode(_ value: Int32) throws { node.setInteger(value) }
    mutating func encode(_ value: Int64) throws { node.setInteger(value) }
    mutating func encode(_ value: UInt) throws { node.setInteger(value) }
    mutating func encode(_ value: UInt8) throws { node.setInteger(value) }
    mutating func encode(_ value: UInt16) throws { node.setInteger(value) }
    mutating func encode(_ value: UInt32) throws { node.setInteger(value) }
    mutating func encode(_ value: UInt64) throws { node.setInteger(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { try node.encode(value) }
}
