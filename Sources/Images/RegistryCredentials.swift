import FoundationEssentials
import Glibc
import SystemSupport

/// A user name and secret for one registry.
///
/// They go to the registry itself (HTTPS, or plain HTTP where the client allows it for that
/// registry: loopback, or ``RegistryClient/Configuration/insecureRegistries``) and to the token
/// realm its challenge names when the realm is HTTPS. A plain-HTTP realm gets them only on the
/// registry's own host (compared as written: `127.0.0.2` or `localhost` is another host than
/// `127.0.0.1`) and only where the registry itself is plain HTTP; any other realm is asked for
/// an anonymous token, so the password never crosses the network in clear text to a host the
/// user did not name. A request that anonymous token does not cover fails with
/// ``ImageError/Code/unauthorized`` naming the realm.
public struct RegistryCredentials: Sendable, Hashable {
    /// The user name (for an identity token, Docker uses `<token>`).
    public var username: String
    /// The password or personal access token.
    public var password: String

    /// Creates credentials.
    ///
    /// - Parameters:
    ///   - username: The user name.
    ///   - password: The password or token.
    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }
}

/// Docker's client configuration file (`config.json`), read for registry credentials.
///
/// Credentials come, in Docker's order, from `credHelpers[registry]`, then `credsStore`, then
/// the base64 `auth` of `auths[registry]`. A helper is run as `docker-credential-<name> get`
/// with the registry on standard input, which is Docker's documented credential-helper protocol.
public struct DockerConfig: Sendable, Hashable {
    /// The file this was read from.
    public var path: String
    /// `auths`: registry → base64 `user:password`.
    public var auths: [String: String]
    /// `credsStore`: the default credential helper, if any.
    public var credentialsStore: String?
    /// `credHelpers`: registry → helper name.
    public var credentialHelpers: [String: String]

    private struct File: Decodable {
        struct Auth: Decodable {
            var auth: String?
            var username: String?
            var password: String?
        }
        var auths: [String: Auth]?
        var credsStore: String?
        var credHelpers: [String: String]?
    }

    /// Reads a `config.json`.
    ///
    /// - Parameter path: The file.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/invalidContent`` if it is not valid JSON,
    ///   or ``ImageError/Code/notFound`` if it does not exist.
    public init(path: String) throws(ImageError) {
        let file = try ContentStore.decode(File.self, from: ImageError.from(try readWholeFile(path)), what: path)
        self.path = path
        auths = (file.auths ?? [:]).compactMapValues { entry in
            entry.auth ?? entry.username.flatMap { user in
                entry.password.map { Data("\(user):\($0)".utf8).base64EncodedString() }
            }
        }
        credentialsStore = file.credsStore
        credentialHelpers = file.credHelpers ?? [:]
    }

    /// The file Docker would read: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    ///
    /// - Parameter environment: The environment to look in; nil means the process's.
    /// - Returns: The parsed file, or nil if there is none.
    /// - Throws: ``ImageError`` if the file exists but cannot be parsed.
    public static func standard(environment: [String: String]? = nil) throws(ImageError) -> DockerConfig? {
        let path = standardPath(environment: environment)
        guard FileIO.exists(path) else { return nil }
        return try DockerConfig(path: path)
    }

    /// The path of the file Docker reads: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    ///
    /// - Parameter environment: The environment to look in; nil means the process's.
    /// - Returns: The path, whether or not the file exists.
    public static func standardPath(environment: [String: String]? = nil) -> String {
        let environment = environment ?? ProcessInfo.processInfo.environment
        return (environment["DOCKER_CONFIG"] ?? (environment["HOME"] ?? getpwuid(getuid()).map { String(cString: $0.pointee.pw_dir) } ?? "/") + "/.docker") + "/config.json"
    }

    /// Records credentials in a `config.json`'s `auths`, as `docker login` does without a
    /// credential store; every other part of the file is kept. The file gets mode 0600.
    ///
    /// - Parameters:
    ///   - credentials: The user name and password.
    ///   - registry: The registry host (`docker.io` is stored under Docker's `https://index.docker.io/v1/`).
    ///   - path: The file, created with its directory if missing.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/invalidContent`` if the file is not a
    ///   JSON object, ``ImageError/Code/io`` if it cannot be written.
    public static func storeCredentials(_ credentials: RegistryCredentials, for registry: String, in path: String) throws(ImageError) {
        _ = try editAuths(in: path) { auths in
            let auth = Data("\(credentials.username):\(credentials.password)".utf8).base64EncodedString()
            auths[authKey(registry)] = .object(["auth": .string(auth)])
            return true
        }
    }

    /// Forgets the credentials of a registry in a `config.json` (`docker logout`).
    ///
    /// - Parameters:
    ///   - registry: The registry host.
    ///   - path: The file.
    /// - Returns: False if the file held no credentials for the registry.
    /// - Throws: ``ImageError`` if the file cannot be parsed or written.
    @discardableResult
    public static func removeCredentials(for registry: String, in path: String) throws(ImageError) -> Bool {
        guard FileIO.exists(path) else { return false }
        return try editAuths(in: path) { auths in auths.removeValue(forKey: authKey(registry)) != nil }
    }

    private static func authKey(_ registry: String) -> String {
        registry == ImageReference.dockerHub ? "https://index.docker.io/v1/" : registry
    }

    /// Rewrites the `auths` object of a config file; `edit` says whether anything changed.
    private static func editAuths(in path: String, _ edit: (inout [String: JSONValue]) -> Bool) throws(ImageError) -> Bool {
        var document: [String: JSONValue] = [:]
        if FileIO.exists(path) {
            let bytes = try ImageError.from(try readWholeFile(path))
            guard let parsed = try? JSONDecoder().decode(JSONValue.self, from: Data(bytes)), case .object(let object) = parsed else {
                throw ImageError(code: .invalidContent, detail: "\(path) is not a json object")
            }
            document = object
        }
        var auths: [String: JSONValue] = [:]
        if case .object(let object) = document["auths"] { auths = object }
        guard edit(&auths) else { return false }
        document["auths"] = .object(auths)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let data = try? encoder.encode(JSONValue.object(document)) else {
            throw ImageError(code: .invalidContent, detail: "encode \(path)")
        }
        try ImageError.from(try makeDirectories(String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]), mode: 0o755))
        try ImageError.from(try writeAtomically(path, Array(data), mode: 0o600))
        return true
    }

    /// The credentials stored for a registry.
    ///
    /// - Parameter registry: The registry host, as in a reference (`docker.io` also matches
    ///   Docker's `https://index.docker.io/v1/` key).
    /// - Returns: The credentials, or nil if none are stored.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/unauthorized`` when a helper fails.
    public func credentials(for registry: String) throws(ImageError) -> RegistryCredentials? {
        let keys = registry == ImageReference.dockerHub
            ? ["https://index.docker.io/v1/", "index.docker.io", "docker.io"]
            : [registry, "https://\(registry)", "http://\(registry)"]
        for key in keys {
            if let helper = credentialHelpers[key] { return try Self.runHelper(helper, serverURL: key, registry: registry) }
        }
        if let helper = credentialsStore {
            for key in keys {
                if let found = try Self.runHelper(helper, serverURL: key, registry: registry) { return found }
            }
        }
        for key in keys {
            guard let encoded = auths[key] else { continue }
            guard let data = Data(base64Encoded: encoded), let text = String(validating: data, as: UTF8.self),
                let colon = text.firstIndex(of: ":")
            else {
                throw ImageError(code: .invalidContent, registry: registry, detail: "\(path): auths entry is not base64 user:password")
            }
            return RegistryCredentials(username: String(text[..<colon]), password: String(text[text.index(after: colon)...]))
        }
        return nil
    }

    /// Runs `docker-credential-<helper> get`; "credentials not found" is nil, not an error.
    private static func runHelper(_ helper: String, serverURL: String, registry: String) throws(ImageError) -> RegistryCredentials? {
        let result: (status: Int32, output: [UInt8])
        do throws(SystemError) {
            result = try runProgramToEnd(["docker-credential-\(helper)", "get"], input: Array(serverURL.utf8))
        } catch {
            throw ImageError(code: .unauthorized, registry: registry, detail: "run docker-credential-\(helper): \(error)")
        }
        let text = String(decoding: result.output, as: UTF8.self)
        guard result.status == 0 else {
            if text.lowercased().contains("credentials not found") { return nil }
            throw ImageError(
                code: .unauthorized, registry: registry,
                detail: "docker-credential-\(helper) get exited with status \(result.status)")
        }
        struct Answer: Decodable {
            var Username: String
            var Secret: String
        }
        let answer = try ContentStore.decode(Answer.self, from: result.output, what: "docker-credential-\(helper) output")
        return RegistryCredentials(username: answer.Username, password: answer.Secret)
    }
}
