import Foundation

/// The limits of one run: what a request may ask for, and what the server allows at most.
public struct RunLimits: Sendable, Codable, Hashable {
    /// The wall-clock deadline, in milliseconds: the run is killed at it and reported timed out.
    public var wallTimeMs: Int
    /// The memory limit (no swap), in bytes: the run is OOM-killed above it.
    public var memoryBytes: Int64
    /// CPUs' worth of time.
    public var cpus: Double
    /// The most processes and threads at once.
    public var pids: Int64
    /// The most bytes of stdout, and of stderr, kept in the result; the rest is dropped.
    public var outputBytes: Int

    /// Limits.
    public init(wallTimeMs: Int, memoryBytes: Int64, cpus: Double, pids: Int64, outputBytes: Int) {
        self.wallTimeMs = wallTimeMs
        self.memoryBytes = memoryBytes
        self.cpus = cpus
        self.pids = pids
        self.outputBytes = outputBytes
    }

    /// What a run gets when its request names no limit: 10 s, 128 MiB, one CPU, 64 processes,
    /// 64 KiB of each stream.
    public static let defaults = RunLimits(wallTimeMs: 10_000, memoryBytes: 128 << 20, cpus: 1, pids: 64, outputBytes: 64 << 10)
    /// The most a request may ask for: 60 s, 1 GiB, two CPUs, 256 processes, 1 MiB of each stream.
    public static let maximum = RunLimits(wallTimeMs: 60_000, memoryBytes: 1 << 30, cpus: 2, pids: 256, outputBytes: 1 << 20)
}

/// How the server runs: built from defaults, then a JSON file, then the environment, then
/// command-line flags, each overriding the one before.
public struct ServerConfiguration: Sendable, Codable {
    /// The address to listen on.
    public var host = "127.0.0.1"
    /// The port; 0 picks a free one.
    public var port = 8080
    /// Berth's root (images, containers); `nil` is Berth's default (`BERTH_ROOT`, else `/var/lib/berth`).
    public var berthRoot: String?
    /// Where each run's files are written before they are mounted read-only at `/work`.
    public var scratchDirectory = "/tmp/code-runner"
    /// Bearer tokens that may call the API; empty lets anyone in (logged as a warning).
    public var apiKeys: [String] = []
    /// A file of bearer tokens, one a line, added to ``apiKeys``.
    public var apiKeysFile: String?
    /// Runs at once; more wait in the queue.
    public var maxConcurrentRuns = 4
    /// Runs that may wait for a slot; beyond them a request gets 429 with Retry-After.
    public var maxQueuedRuns = 32
    /// The largest request body accepted, in bytes (413 above it).
    public var maxRequestBytes = 1 << 20
    /// The limits of a run whose request names none.
    public var defaultLimits = RunLimits.defaults
    /// The most a request may ask for (400 above it).
    public var maximumLimits = RunLimits.maximum
    /// The registry `POST /v1/images/pull` pulls from (`host[:port]`); `nil` refuses pulls.
    public var registry: String?

    /// The defaults: loopback, port 8080, four runs at once, no API keys.
    public init() {}

    enum CodingKeys: String, CodingKey {
        case host, port, berthRoot, scratchDirectory, apiKeys, apiKeysFile, maxConcurrentRuns, maxQueuedRuns
        case maxRequestBytes, defaultLimits, maximumLimits, registry
    }

    /// Reads a JSON file; a field it lacks keeps its default.
    public init(from decoder: any Decoder) throws {
        self.init()
        let values = try decoder.container(keyedBy: CodingKeys.self)
        host = try values.decodeIfPresent(String.self, forKey: .host) ?? host
        port = try values.decodeIfPresent(Int.self, forKey: .port) ?? port
        berthRoot = try values.decodeIfPresent(String.self, forKey: .berthRoot) ?? berthRoot
        scratchDirectory = try values.decodeIfPresent(String.self, forKey: .scratchDirectory) ?? scratchDirectory
        apiKeys = try values.decodeIfPresent([String].self, forKey: .apiKeys) ?? apiKeys
        apiKeysFile = try values.decodeIfPresent(String.self, forKey: .apiKeysFile) ?? apiKeysFile
        maxConcurrentRuns = try values.decodeIfPresent(Int.self, forKey: .maxConcurrentRuns) ?? maxConcurrentRuns
        maxQueuedRuns = try values.decodeIfPresent(Int.self, forKey: .maxQueuedRuns) ?? maxQueuedRuns
        maxRequestBytes = try values.decodeIfPresent(Int.self, forKey: .maxRequestBytes) ?? maxRequestBytes
        defaultLimits = try values.decodeIfPresent(RunLimits.self, forKey: .defaultLimits) ?? defaultLimits
        maximumLimits = try values.decodeIfPresent(RunLimits.self, forKey: .maximumLimits) ?? maximumLimits
        registry = try values.decodeIfPresent(String.self, forKey: .registry) ?? registry
    }

    /// Reads the configuration file at `path`.
    ///
    /// - Throws: `ConfigurationError` naming the file and what is wrong in it.
    public static func load(file path: String) throws -> ServerConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError("cannot read the configuration file \(path)")
        }
        do {
            return try JSONDecoder().decode(ServerConfiguration.self, from: data)
        } catch {
            throw ConfigurationError("the configuration file \(path) is not valid: \(error)")
        }
    }

    /// Applies the `CODE_RUNNER_*` variables: `HOST`, `PORT`, `API_KEYS` (comma-separated),
    /// `API_KEYS_FILE`, `MAX_CONCURRENT_RUNS`, `MAX_QUEUED_RUNS`, `MAX_REQUEST_BYTES`,
    /// `REGISTRY`, `SCRATCH_DIRECTORY`, `BERTH_ROOT`.
    ///
    /// - Throws: `ConfigurationError` for a number that does not parse.
    public mutating func apply(environment: [String: String]) throws {
        func value(_ name: String) -> String? { environment["CODE_RUNNER_" + name].flatMap { $0.isEmpty ? nil : $0 } }
        func number(_ name: String) throws -> Int? {
            guard let text = value(name) else { return nil }
            guard let number = Int(text) else { throw ConfigurationError("CODE_RUNNER_\(name)=\(text) is not a number") }
            return number
        }
        host = value("HOST") ?? host
        port = try number("PORT") ?? port
        berthRoot = value("BERTH_ROOT") ?? berthRoot
        scratchDirectory = value("SCRATCH_DIRECTORY") ?? scratchDirectory
        if let keys = value("API_KEYS") { apiKeys += keys.split(separator: ",").map { String($0) } }
        apiKeysFile = value("API_KEYS_FILE") ?? apiKeysFile
        maxConcurrentRuns = try number("MAX_CONCURRENT_RUNS") ?? maxConcurrentRuns
        maxQueuedRuns = try number("MAX_QUEUED_RUNS") ?? maxQueuedRuns
        maxRequestBytes = try number("MAX_REQUEST_BYTES") ?? maxRequestBytes
        registry = value("REGISTRY") ?? registry
    }

    /// The configuration of a server: the defaults, then the JSON file at `file`, then the
    /// `CODE_RUNNER_*` variables of `environment`, then `flags`, each overriding the one before
    /// (API keys from the file and the environment add up).
    ///
    /// - Parameters:
    ///   - file: A JSON configuration file, or `nil`.
    ///   - environment: The process's environment.
    ///   - flags: The command line's settings.
    /// - Throws: `ConfigurationError` naming the file or variable that is wrong.
    public static func resolve(file: String?, environment: [String: String], flags: ServerFlags) throws -> ServerConfiguration {
        var settings = try file.map { try load(file: $0) } ?? ServerConfiguration()
        try settings.apply(environment: environment)
        settings.host = flags.host ?? settings.host
        settings.port = flags.port ?? settings.port
        settings.apiKeysFile = flags.apiKeysFile ?? settings.apiKeysFile
        settings.maxConcurrentRuns = flags.maxConcurrentRuns ?? settings.maxConcurrentRuns
        settings.maxQueuedRuns = flags.maxQueuedRuns ?? settings.maxQueuedRuns
        settings.registry = flags.registry ?? settings.registry
        settings.berthRoot = flags.berthRoot ?? settings.berthRoot
        return settings
    }

    /// Every API key: ``apiKeys`` and the lines of ``apiKeysFile``.
    ///
    /// - Throws: `ConfigurationError` when the file cannot be read.
    public func allAPIKeys() throws -> Set<String> {
        var keys = Set(apiKeys)
        if let apiKeysFile {
            guard let data = FileManager.default.contents(atPath: apiKeysFile) else {
                throw ConfigurationError("cannot read the API keys file \(apiKeysFile)")
            }
            for line in String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline) {
                let key = line.trimmingCharacters(in: .whitespaces)
                if !key.isEmpty, !key.hasPrefix("#") { keys.insert(key) }
            }
        }
        return keys
    }

    /// Checks the numbers.
    ///
    /// - Throws: `ConfigurationError` naming the first bad value.
    public func validate() throws {
        guard (0...65535).contains(port) else { throw ConfigurationError("port \(port) is not 0 to 65535") }
        guard maxConcurrentRuns > 0 else { throw ConfigurationError("maxConcurrentRuns must be at least 1") }
        guard maxQueuedRuns >= 0 else { throw ConfigurationError("maxQueuedRuns must not be negative") }
        guard maxRequestBytes > 0 else { throw ConfigurationError("maxRequestBytes must be at least 1") }
        if let problem = maximumLimits.problem(within: maximumLimits, what: "maximumLimits") ?? defaultLimits.problem(within: maximumLimits, what: "defaultLimits") {
            throw ConfigurationError(problem)
        }
    }
}

/// The settings the command line gives, each `nil` when its flag is absent.
public struct ServerFlags: Sendable {
    /// `--host`.
    public var host: String?
    /// `--port`.
    public var port: Int?
    /// `--api-keys-file`.
    public var apiKeysFile: String?
    /// `--max-concurrent-runs`.
    public var maxConcurrentRuns: Int?
    /// `--max-queued-runs`.
    public var maxQueuedRuns: Int?
    /// `--registry`.
    public var registry: String?
    /// `--berth-root`.
    public var berthRoot: String?

    /// Flags; each `nil` leaves the file's or the environment's setting.
    public init(host: String? = nil, port: Int? = nil, apiKeysFile: String? = nil, maxConcurrentRuns: Int? = nil,
                maxQueuedRuns: Int? = nil, registry: String? = nil, berthRoot: String? = nil) {
        self.host = host
        self.port = port
        self.apiKeysFile = apiKeysFile
        self.maxConcurrentRuns = maxConcurrentRuns
        self.maxQueuedRuns = maxQueuedRuns
        self.registry = registry
        self.berthRoot = berthRoot
    }
}

/// A configuration that cannot be used: the message says which value and why.
public struct ConfigurationError: Error, CustomStringConvertible {
    /// What is wrong.
    public var description: String

    init(_ description: String) { self.description = description }
}

extension RunLimits {
    /// What is out of range, compared with `maximum`, or `nil` when every limit is in range.
    func problem(within maximum: RunLimits, what: String) -> String? {
        func check<T: Comparable & Numeric>(_ name: String, _ value: T, _ most: T) -> String? {
            if value <= 0 { return "\(what).\(name) must be above 0 (got \(value))" }
            if value > most { return "\(what).\(name) \(value) is above the server's maximum \(most)" }
            return nil
        }
        if outputBytes < 0 { return "\(what).outputBytes must not be negative (got \(outputBytes))" }
        if outputBytes > maximum.outputBytes {
            return "\(what).outputBytes \(outputBytes) is above the server's maximum \(maximum.outputBytes)"
        }
        if memoryBytes < 4 << 20 { return "\(what).memoryBytes must be at least 4194304 (got \(memoryBytes))" }
        return check("wallTimeMs", wallTimeMs, maximum.wallTimeMs)
            ?? check("memoryBytes", memoryBytes, maximum.memoryBytes)
            ?? check("cpus", cpus, maximum.cpus)
            ?? check("pids", pids, maximum.pids)
    }
}
