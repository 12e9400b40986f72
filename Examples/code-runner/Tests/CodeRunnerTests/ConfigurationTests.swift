import CodeRunner
import Foundation
import Testing

/// Where the server's settings come from: the defaults, a JSON file, `CODE_RUNNER_*` variables
/// and flags, each overriding the one before; a bad value is an error that names it.
struct ConfigurationTests {
    /// A JSON file with `text`, removed after `body`.
    func withFile(_ text: String, _ body: (String) throws -> Void) throws {
        let path = FileManager.default.temporaryDirectory.path + "/code-runner-config-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).json"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        try body(path)
    }

    @Test func flagsOverrideTheEnvironmentWhichOverridesTheFile() throws {
        let file = #"""
            {"host": "127.0.0.2", "port": 1111, "maxConcurrentRuns": 2, "maxQueuedRuns": 3, "registry": "file:5000",
             "apiKeys": ["from-file"], "maxRequestBytes": 4096, "defaultLimits": {"wallTimeMs": 500, "memoryBytes": 8388608,
             "cpus": 0.5, "pids": 8, "outputBytes": 100}}
            """#
        try withFile(file) { path in
            let environment = ["CODE_RUNNER_PORT": "2222", "CODE_RUNNER_MAX_QUEUED_RUNS": "5", "CODE_RUNNER_API_KEYS": "env-a,env-b",
                               "CODE_RUNNER_REGISTRY": "env:5000", "CODE_RUNNER_HOST": "", "UNRELATED": "x"]
            let settings = try ServerConfiguration.resolve(file: path, environment: environment,
                                                           flags: ServerFlags(maxQueuedRuns: 7, registry: "flag:5000"))
            #expect(settings.host == "127.0.0.2")          // file (an empty variable is no setting)
            #expect(settings.port == 2222)                  // environment over file
            #expect(settings.maxConcurrentRuns == 2)        // file
            #expect(settings.maxQueuedRuns == 7)            // flag over environment over file
            #expect(settings.registry == "flag:5000")       // flag over environment over file
            #expect(settings.apiKeys == ["from-file", "env-a", "env-b"])  // keys add up
            #expect(settings.maxRequestBytes == 4096 && settings.defaultLimits.wallTimeMs == 500)
            #expect(settings.maximumLimits == RunLimits.maximum && settings.scratchDirectory == "/tmp/code-runner")  // defaults
            try settings.validate()
        }
        // No file, no variables, no flags: the defaults.
        let defaults = try ServerConfiguration.resolve(file: nil, environment: [:], flags: ServerFlags())
        #expect(defaults.host == "127.0.0.1" && defaults.port == 8080 && defaults.maxConcurrentRuns == 4 && defaults.registry == nil)
    }

    @Test func badSettingsAreErrorsThatNameThem() throws {
        #expect(throws: ConfigurationError.self) {
            try ServerConfiguration.resolve(file: nil, environment: ["CODE_RUNNER_PORT": "eighty"], flags: ServerFlags())
        }
        #expect(throws: ConfigurationError.self) {
            try ServerConfiguration.resolve(file: "/nonexistent/code-runner.json", environment: [:], flags: ServerFlags())
        }
        try withFile(#"{"port": "not a number"}"#) { path in
            let error = #expect(throws: ConfigurationError.self) {
                try ServerConfiguration.resolve(file: path, environment: [:], flags: ServerFlags())
            }
            #expect(error?.description.contains(path) == true, "\(String(describing: error))")
        }
        try withFile(#"{"maxConcurrentRuns": 0}"#) { path in
            let settings = try ServerConfiguration.resolve(file: path, environment: [:], flags: ServerFlags())
            #expect(throws: ConfigurationError.self) { try settings.validate() }
            // A flag puts it right.
            try ServerConfiguration.resolve(file: path, environment: [:], flags: ServerFlags(maxConcurrentRuns: 1)).validate()
        }
        let error = #expect(throws: ConfigurationError.self) {
            try ServerConfiguration.resolve(file: nil, environment: ["CODE_RUNNER_MAX_QUEUED_RUNS": "many"], flags: ServerFlags())
        }
        #expect(error?.description.contains("CODE_RUNNER_MAX_QUEUED_RUNS") == true)
    }
}
