import Glibc

/// The operating system and CPU an image manifest is built for.
///
/// Architecture names follow Go's `GOARCH` (`amd64`, `arm64`, `arm`, `386`, …); ``init(parsing:)``
/// accepts the kernel's names too (`x86_64`, `aarch64`).
public struct Platform: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The CPU architecture, as in Go's `GOARCH`.
    public var architecture: String
    /// The operating system, as in Go's `GOOS`.
    public var os: String
    /// The CPU variant, such as `v7` or `v8`, if any.
    public var variant: String?
    /// The operating system version (Windows images), if any.
    public var osVersion: String?
    /// Required operating system features (Windows images), if any.
    public var osFeatures: [String]?

    enum CodingKeys: String, CodingKey {
        case architecture, os, variant
        case osVersion = "os.version"
        case osFeatures = "os.features"
    }

    /// Creates a platform.
    ///
    /// - Parameters:
    ///   - os: The operating system, for example `linux`.
    ///   - architecture: The architecture, for example `amd64`.
    ///   - variant: The CPU variant, if any.
    public init(os: String, architecture: String, variant: String? = nil) {
        self.os = os
        self.architecture = Self.normalizedArchitecture(architecture)
        self.variant = variant
    }

    /// Parses `os/arch[/variant]`, as given to `--platform`.
    ///
    /// - Parameter text: For example `linux/arm64` or `linux/arm/v7`.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/invalidArgument`` quoting the text.
    public init(parsing text: String) throws(ImageError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard (2...3).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }) else {
            throw ImageError(code: .invalidArgument, detail: "platform \"\(text)\": expected os/arch[/variant]")
        }
        self.init(os: parts[0].lowercased(), architecture: parts[1].lowercased(), variant: parts.count == 3 ? parts[2] : nil)
    }

    /// The platform of the running machine, from `uname`.
    public static var host: Platform {
        var name = utsname()
        uname(&name)
        let machine = withUnsafeBytes(of: &name.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let architecture = normalizedArchitecture(machine)
        let variant: String? =
            switch machine {
            case "aarch64", "arm64": "v8"
            case "armv7l": "v7"
            case "armv6l": "v6"
            default: nil
            }
        return Platform(os: "linux", architecture: architecture, variant: variant)
    }

    /// `os/arch[/variant]`.
    public var description: String {
        [os, architecture, variant].compactMap { $0 }.joined(separator: "/")
    }

    /// Whether an image built for `candidate` runs here, following containerd's platform matcher:
    /// os and architecture must be equal; a variant must match when both sides name one, and
    /// `arm64` treats a missing variant as `v8`.
    ///
    /// - Parameter candidate: The platform of an index entry.
    /// - Returns: Whether the entry matches this platform.
    public func matches(_ candidate: Platform) -> Bool {
        guard os == candidate.os, architecture == Self.normalizedArchitecture(candidate.architecture) else {
            return false
        }
        let defaultVariant = architecture == "arm64" ? "v8" : nil
        guard let wanted = variant ?? defaultVariant, let offered = candidate.variant ?? defaultVariant else {
            return true
        }
        return wanted == offered
    }

    static func normalizedArchitecture(_ name: String) -> String {
        switch name {
        case "x86_64", "x86-64": "amd64"
        case "aarch64": "arm64"
        case "i386", "i686": "386"
        case "armhf", "armel", "armv7l", "armv6l": "arm"
        default: name
        }
    }
}
