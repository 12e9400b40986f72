import Glibc

/// An IPv4 address, such as `10.89.0.2`.
///
/// ```swift
/// let address = try IPv4Address("10.89.0.2")
/// print(address.value)   // 0x0A59_0002
/// ```
public struct IPv4Address: Hashable, Sendable, Comparable, TextCodable, CustomStringConvertible {
    /// The address as a number in host byte order (`10.0.0.1` is `0x0A00_0001`).
    public var value: UInt32

    /// Wraps an address given as a number in host byte order.
    public init(_ value: UInt32) { self.value = value }

    /// Parses dotted-quad notation.
    ///
    /// - Parameter text: An address such as `172.30.0.1`.
    /// - Throws: ``NetworkError`` (``NetworkError/Code/invalidArgument``) when it is not one.
    public init(_ text: String) throws(NetworkError) {
        var raw = in_addr()
        guard inet_pton(AF_INET, text, &raw) == 1 else {
            throw NetworkError(code: .invalidArgument, detail: "parse ipv4 address \"\(text)\": not a dotted quad")
        }
        value = UInt32(bigEndian: raw.s_addr)
    }

    /// The four bytes in network order, as netlink and `sockaddr_in` want them.
    var bytes: [UInt8] { withUnsafeBytes(of: value.bigEndian, Array.init) }

    /// Dotted-quad notation.
    public var description: String {
        "\(value >> 24).\((value >> 16) & 0xff).\((value >> 8) & 0xff).\(value & 0xff)"
    }

    public static func < (lhs: IPv4Address, rhs: IPv4Address) -> Bool { lhs.value < rhs.value }
}

/// An IPv4 network in CIDR notation, such as `10.89.0.0/24`.
///
/// The address is always the network address: host bits given when parsing are cleared.
public struct IPv4Subnet: Hashable, Sendable, TextCodable, CustomStringConvertible {
    /// The network address.
    public private(set) var address: IPv4Address
    /// The number of leading network bits, 0 to 32.
    public private(set) var prefixLength: Int

    /// Creates the subnet of `prefixLength` bits containing `address`.
    ///
    /// - Parameters:
    ///   - address: Any address in the subnet.
    ///   - prefixLength: The number of network bits, 0 to 32.
    /// - Throws: ``NetworkError`` (``NetworkError/Code/invalidArgument``) for a prefix outside 0…32.
    public init(_ address: IPv4Address, prefixLength: Int) throws(NetworkError) {
        guard (0...32).contains(prefixLength) else {
            throw NetworkError(code: .invalidArgument, detail: "ipv4 prefix length \(prefixLength): must be 0 to 32")
        }
        self.prefixLength = prefixLength
        self.address = IPv4Address(address.value & Self.mask(prefixLength))
    }

    /// Parses CIDR notation.
    ///
    /// - Parameter text: A subnet such as `10.89.3.0/24`.
    /// - Throws: ``NetworkError`` (``NetworkError/Code/invalidArgument``) when it is not one.
    public init(_ text: String) throws(NetworkError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let length = Int(parts[1]) else {
            throw NetworkError(code: .invalidArgument, detail: "parse subnet \"\(text)\": expected address/prefix")
        }
        try self.init(IPv4Address(String(parts[0])), prefixLength: length)
    }

    /// The netmask for `prefixLength` bits.
    static func mask(_ prefixLength: Int) -> UInt32 {
        prefixLength == 0 ? 0 : UInt32.max << UInt32(32 - prefixLength)
    }

    /// The number of addresses in the subnet, network and broadcast address included.
    public var size: UInt64 { UInt64(1) << UInt64(32 - prefixLength) }

    /// Whether `address` is in the subnet.
    public func contains(_ address: IPv4Address) -> Bool {
        address.value & Self.mask(prefixLength) == self.address.value
    }

    /// Whether the two subnets share any address.
    public func overlaps(_ other: IPv4Subnet) -> Bool {
        let shorter = min(prefixLength, other.prefixLength)
        return address.value & Self.mask(shorter) == other.address.value & Self.mask(shorter)
    }

    /// The `index`th address of the subnet (0 is the network address), or `nil` past its end.
    public func address(at index: UInt64) -> IPv4Address? {
        index < size ? IPv4Address(address.value + UInt32(index)) : nil
    }

    /// CIDR notation.
    public var description: String { "\(address)/\(prefixLength)" }
}

/// An IPv6 address, such as `fd3c:9a1e:77b0::2`.
public struct IPv6Address: Hashable, Sendable, TextCodable, CustomStringConvertible {
    /// The first 64 bits (the network part of a `/64`).
    public var high: UInt64
    /// The last 64 bits (the interface identifier of a `/64`).
    public var low: UInt64

    /// Wraps the two halves of an address, each in host byte order.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Parses any notation `inet_pton(3)` accepts.
    ///
    /// - Throws: ``NetworkError`` (``NetworkError/Code/invalidArgument``) when it is not an address.
    public init(_ text: String) throws(NetworkError) {
        var raw = [UInt8](repeating: 0, count: 16)
        guard inet_pton(AF_INET6, text, &raw) == 1 else {
            throw NetworkError(code: .invalidArgument, detail: "parse ipv6 address \"\(text)\": not an address")
        }
        high = Self.number(raw[0..<8])
        low = Self.number(raw[8..<16])
    }

    /// The sixteen bytes in network order, as netlink and `sockaddr_in6` want them.
    var bytes: [UInt8] {
        withUnsafeBytes(of: high.bigEndian, Array.init) + withUnsafeBytes(of: low.bigEndian, Array.init)
    }

    static func number(_ bytes: ArraySlice<UInt8>) -> UInt64 { bytes.reduce(0) { $0 << 8 | UInt64($1) } }

    /// The canonical text form (RFC 5952, as `inet_ntop(3)` writes it).
    public var description: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, bytes, &text, socklen_t(text.count)) != nil else { return "::" }
        return String(cString: text)
    }
}

/// An IPv6 `/64` network, the only size Berth hands out, written like `fd3c:9a1e:77b0:1::/64`.
public struct IPv6Subnet: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The network's first 64 bits.
    public private(set) var prefix: UInt64

    /// Wraps the first 64 bits of a `/64`.
    public init(prefix: UInt64) { self.prefix = prefix }

    /// A random unique local (RFC 4193) `/64`: `fd` followed by a 40-bit random global id and a
    /// 16-bit subnet id.
    static func randomUniqueLocal() -> IPv6Subnet {
        IPv6Subnet(prefix: 0xfd00_0000_0000_0000 | UInt64.random(in: 0...(1 << 56 - 1)))
    }

    /// The address whose last 64 bits are `host`.
    public func address(host: UInt64) -> IPv6Address { IPv6Address(high: prefix, low: host) }

    /// Whether the subnet and a route of `length` bits to `bytes` share any address.
    func overlaps(routeBytes bytes: [UInt8], length: Int) -> Bool {
        guard bytes.count >= 8 else { return false }
        let other = IPv6Address.number(bytes[0..<8])
        let bits = min(64, length)
        let mask: UInt64 = bits == 0 ? 0 : UInt64.max << UInt64(64 - bits)
        return prefix & mask == other & mask
    }

    /// CIDR notation.
    public var description: String { "\(address(host: 0))/64" }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard text.hasSuffix("/64"), let address = try? IPv6Address(String(text.dropLast(3))) else {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: "not an ipv6 /64: \(text)"))
        }
        prefix = address.high
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// A value stored in JSON as its text form (`"10.89.0.0/24"`), parsed back with its
/// throwing text initializer.
public protocol TextCodable: Codable, CustomStringConvertible {
    /// Parses the text form.
    init(_ text: String) throws(NetworkError)
}

extension TextCodable {
    /// Decodes the text form.
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { try self.init(text) } catch {
            throw DecodingError.dataCorrupted(
                .init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    /// Encodes the text form.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
