/// A parsed, normalized image reference: `registry/repository[:tag][@digest]`.
///
/// Parsing follows Docker's distribution/reference grammar and its normalization rules:
/// `busybox` becomes `docker.io/library/busybox:latest`, `host:5000/a/b:tag` keeps its registry,
/// and `name@sha256:…` pins a digest (a reference with a digest and no tag gets no tag).
///
/// ```swift
/// let ref = try ImageReference(parsing: "busybox")
/// print(ref)   // docker.io/library/busybox:latest
/// ```
public struct ImageReference: Sendable, Hashable, CustomStringConvertible {
    /// The registry host, with a port if one was given: `docker.io`, `127.0.0.1:5000`.
    public var registry: String
    /// The repository path inside the registry: `library/busybox`.
    public var repository: String
    /// The tag, if the reference has one. A reference with neither tag nor digest gets `latest`.
    public var tag: String?
    /// The pinned manifest digest, if the reference has one.
    public var digest: Digest?

    /// The registry Docker Hub references normalize to.
    public static let dockerHub = "docker.io"

    /// Parses and normalizes a reference.
    ///
    /// - Parameter text: A reference as a user types it: `busybox`, `ghcr.io/o/r:1.0`,
    ///   `localhost:5000/a@sha256:…`.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/invalidReference``; its message quotes
    ///   the input and says what is wrong.
    public init(parsing text: String) throws(ImageError) {
        func invalid(_ why: String) -> ImageError {
            ImageError(code: .invalidReference, reference: text, detail: why)
        }
        guard !text.isEmpty else { throw invalid("reference is empty") }
        var rest = Substring(text)
        if let at = rest.firstIndex(of: "@") {
            do {
                digest = try Digest(parsing: String(rest[rest.index(after: at)...]))
            } catch {
                throw invalid("invalid digest: \(error.detail)")
            }
            rest = rest[..<at]
        }
        // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
        let lastSlash = rest.lastIndex(of: "/")
        if let colon = rest.lastIndex(of: ":"), lastSlash.map({ colon > $0 }) ?? true {
            let tag = rest[rest.index(after: colon)...]
            guard Self.isTag(tag) else { throw invalid("invalid tag \"\(tag)\"") }
            self.tag = String(tag)
            rest = rest[..<colon]
        }
        guard !rest.isEmpty else { throw invalid("repository name is empty") }
        guard rest.utf8.count <= 255 else { throw invalid("repository name is longer than 255 characters") }

        // Normalization (distribution/reference normalize.go): the first component is a registry
        // only if it contains '.' or ':' or is "localhost"; otherwise the image is on Docker Hub.
        var registry = Self.dockerHub
        var path = rest
        if let slash = rest.firstIndex(of: "/") {
            let first = rest[..<slash]
            if first.contains(".") || first.contains(":") || first == "localhost" || first.contains(where: \.isUppercase) {
                guard Self.isDomain(first) else { throw invalid("invalid registry \"\(first)\"") }
                registry = String(first)
                path = rest[rest.index(after: slash)...]
            }
        }
        if registry == "index.docker.io" { registry = Self.dockerHub }
        if registry == Self.dockerHub && !path.contains("/") { path = "library/" + path }
        if path.contains(where: \.isUppercase) { throw invalid("repository name must be lowercase") }
        guard path.split(separator: "/", omittingEmptySubsequences: false).allSatisfy(Self.isPathComponent) else {
            throw invalid("invalid repository name \"\(path)\"")
        }
        if registry == Self.dockerHub, path.hasPrefix("library/"), path.utf8.count == 8 + 64,
            path.dropFirst(8).utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) })
        {
            throw invalid("cannot specify 64-byte hexadecimal strings")
        }
        self.registry = registry
        repository = String(path)
        if tag == nil && digest == nil { tag = "latest" }
    }

    /// Creates a reference from parts that are already valid.
    ///
    /// - Parameters:
    ///   - registry: The registry host.
    ///   - repository: The repository path.
    ///   - tag: The tag, if any.
    ///   - digest: The digest, if any.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/invalidReference`` if the parts do not
    ///   form a valid reference.
    public init(registry: String, repository: String, tag: String? = nil, digest: Digest? = nil) throws(ImageError) {
        var text = registry + "/" + repository
        if let tag { text += ":" + tag }
        if let digest { text += "@" + digest.description }
        self = try ImageReference(parsing: text)
    }

    /// The full normalized form: `docker.io/library/busybox:latest`, `host:5000/a@sha256:…`.
    public var description: String {
        var text = name
        if let tag { text += ":" + tag }
        if let digest { text += "@" + digest.description }
        return text
    }

    /// `registry/repository`, without tag or digest.
    public var name: String { registry + "/" + repository }

    /// The short repository name Docker shows and writes into `docker save` archives:
    /// `busybox` for `docker.io/library/busybox`, `user/app` for `docker.io/user/app`,
    /// `host:5000/a/b` otherwise.
    public var familiarName: String {
        guard registry == Self.dockerHub else { return name }
        return repository.hasPrefix("library/") && repository.split(separator: "/").count == 2
            ? String(repository.dropFirst("library/".count)) : repository
    }

    /// What a registry's manifest endpoint is asked for: the digest if pinned, else the tag.
    public var manifestReference: String { digest?.description ?? tag ?? "latest" }

    /// The same repository with a different tag and no digest.
    ///
    /// - Parameter tag: The new tag.
    /// - Returns: The reference `registry/repository:tag`.
    public func withTag(_ tag: String) -> ImageReference {
        var copy = self
        copy.tag = tag
        copy.digest = nil
        return copy
    }

    /// The same repository pinned to a digest, keeping the tag.
    ///
    /// - Parameter digest: The manifest digest.
    /// - Returns: The reference `registry/repository[:tag]@digest`.
    public func withDigest(_ digest: Digest) -> ImageReference {
        var copy = self
        copy.digest = digest
        return copy
    }

    // tag := [\w][\w.-]{0,127}
    private static func isTag(_ tag: Substring) -> Bool {
        guard let first = tag.utf8.first, tag.utf8.count <= 128, isWord(first) else { return false }
        return tag.utf8.allSatisfy { isWord($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    private static func isWord(_ c: UInt8) -> Bool {
        isAlphanumeric(c) || c == UInt8(ascii: "_")
    }

    private static func isAlphanumeric(_ c: UInt8) -> Bool {
        (48...57).contains(c) || (65...90).contains(c) || (97...122).contains(c)
    }

    // path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | __ | [-]*
    private static func isPathComponent(_ part: Substring) -> Bool {
        let bytes = Array(part.utf8)
        let isLowerAlnum = { (c: UInt8) in (48...57).contains(c) || (97...122).contains(c) }
        guard let first = bytes.first, let last = bytes.last, isLowerAlnum(first), isLowerAlnum(last) else {
            return false
        }
        var i = 0
        while i < bytes.count {
            if isLowerAlnum(bytes[i]) {
                i += 1
                continue
            }
            var j = i
            while j < bytes.count && !isLowerAlnum(bytes[j]) { j += 1 }
            let separator = String(decoding: bytes[i..<j], as: UTF8.self)
            let valid = separator == "." || separator == "_" || separator == "__" || separator.allSatisfy { $0 == "-" }
            guard valid else { return false }
            i = j
        }
        return true
    }

    // domain := host [':' port]; host := component ('.' component)* | '[' ipv6 ']'
    private static func isDomain(_ domain: Substring) -> Bool {
        var host = domain
        if let colon = domain.lastIndex(of: ":"), !domain.hasSuffix("]") {
            let port = domain[domain.index(after: colon)...]
            guard !port.isEmpty, port.utf8.allSatisfy({ (48...57).contains($0) }) else { return false }
            host = domain[..<colon]
        }
        if host.hasPrefix("[") && host.hasSuffix("]") {
            return host.dropFirst().dropLast().utf8.allSatisfy { c in
                (48...57).contains(c) || (97...102).contains(c) || (65...70).contains(c) || c == UInt8(ascii: ":")
            }
        }
        return host.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { part in
            guard let first = part.utf8.first, let last = part.utf8.last else { return false }
            return isAlphanumeric(first) && isAlphanumeric(last)
                && part.utf8.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "-") }
        }
    }
}
