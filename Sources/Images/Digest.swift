import Crypto

/// A content address such as `sha256:9a0b…`, as used in descriptors, references and blob paths.
///
/// Berth verifies `sha256` and `sha512` digests; other well-formed algorithms parse but cannot be
/// verified and are rejected when content is stored.
public struct Digest: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    /// The algorithm, for example `sha256`.
    public let algorithm: String
    /// The hex-encoded hash.
    public let encoded: String

    /// Parses a digest.
    ///
    /// - Parameter text: `algorithm:hex`, for example `sha256:` followed by 64 lower-case hex digits.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/invalidDigest``, quoting the text.
    public init(parsing text: String) throws(ImageError) {
        guard let colon = text.firstIndex(of: ":") else {
            throw ImageError(code: .invalidDigest, digest: text, detail: "digest has no algorithm prefix")
        }
        let algorithm = String(text[..<colon])
        let encoded = String(text[text.index(after: colon)...])
        guard Self.isAlgorithm(algorithm) else {
            throw ImageError(code: .invalidDigest, digest: text, detail: "invalid digest algorithm")
        }
        let isHex = encoded.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
        let expectedLength = ["sha256": 64, "sha512": 128][algorithm]
        guard isHex, encoded.utf8.count >= 32, expectedLength.map({ $0 == encoded.utf8.count }) ?? true else {
            throw ImageError(code: .invalidDigest, digest: text, detail: "invalid \(algorithm) hash")
        }
        self.algorithm = algorithm
        self.encoded = encoded
    }

    /// A digest from a finished hash; the parts are valid by construction.
    init(algorithm: String, hash: some Sequence<UInt8>) {
        self.algorithm = algorithm
        encoded = hash.map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// The SHA-256 digest of some bytes.
    ///
    /// - Parameter bytes: The content.
    /// - Returns: `sha256:` and the hex hash.
    public static func sha256(of bytes: some Sequence<UInt8>) -> Digest {
        var hasher = SHA256()
        hasher.update(data: Array(bytes))
        return Digest(algorithm: "sha256", hash: hasher.finalize())
    }

    /// `algorithm:encoded`.
    public var description: String { "\(algorithm):\(encoded)" }

    /// Orders digests by their text, so listings are stable.
    public static func < (lhs: Digest, rhs: Digest) -> Bool { lhs.description < rhs.description }

    /// Decodes a digest from a JSON string.
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            self = try Digest(parsing: text)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "\(error)"))
        }
    }

    /// Encodes the digest as a JSON string.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    // algorithm-component ([+._-] algorithm-component)*, components [a-z0-9]+ (OCI image-spec).
    private static func isAlgorithm(_ text: String) -> Bool {
        let components = text.split(omittingEmptySubsequences: false) { "+._-".contains($0) }
        return !components.isEmpty
            && components.allSatisfy { part in
                !part.isEmpty && part.utf8.allSatisfy { (48...57).contains($0) || (97...122).contains($0) }
            }
    }
}

/// An incremental hash for one of the algorithms Berth verifies.
struct DigestHasher {
    private enum State {
        case sha256(SHA256)
        case sha512(SHA512)
    }
    private var state: State

    /// A SHA-256 hasher, the algorithm Berth names new content with.
    static var sha256: DigestHasher { DigestHasher(state: .sha256(SHA256())) }

    private init(state: State) { self.state = state }

    /// A hasher for the digest's algorithm, or nil if Berth cannot verify that algorithm.
    init?(algorithm: String) {
        switch algorithm {
        case "sha256": state = .sha256(SHA256())
        case "sha512": state = .sha512(SHA512())
        default: return nil
        }
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        switch state {
        case .sha256(var h):
            h.update(bufferPointer: bytes)
            state = .sha256(h)
        case .sha512(var h):
            h.update(bufferPointer: bytes)
            state = .sha512(h)
        }
    }

    func finalize() -> Digest {
        switch state {
        case .sha256(let h): return Digest(algorithm: "sha256", hash: h.finalize())
        case .sha512(let h): return Digest(algorithm: "sha512", hash: h.finalize())
        }
    }
}
