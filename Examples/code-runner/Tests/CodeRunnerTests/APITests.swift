import CodeRunner
import Containers
import Foundation
import Testing

/// Every endpoint and every error of the API, against the real server and real containers.
/// Serialized: the tests check that no container is left, which holds only one at a time.
@Suite(.serialized)
struct APITests {
    @Test func healthAndImages() async throws {
        try await withServer { client, _ in
            let health = try await client.get("/healthz")
            #expect(health.status == 200 && health.text == #"{"status":"ok"}"#)
            #expect(health.headers["X-Request-Id"].first?.isEmpty == false)
            let images = try await client.get("/v1/images")
            #expect(images.status == 200)
            #expect(images.text.contains("busybox"), "\(images.text)")
        }
    }

    @Test func aRunReportsItsExitCodeAndBothStreams() async throws {
        try await withServer { client, _ in
            let result = try await client.result(RunRequest(image: "busybox", command: ["sh", "-c", "echo out; echo err >&2; exit 3"]))
            #expect(result.exitCode == 3 && result.signal == nil)
            #expect(result.stdout == "out\n" && result.stderr == "err\n")
            #expect(!result.stdoutTruncated && !result.stderrTruncated && !result.oomKilled && !result.timedOut)
            #expect(result.durationMs > 0)
        }
    }

    @Test func stdinEnvironmentAndFilesReachTheProgram() async throws {
        try await withServer { client, _ in
            let result = try await client.result(RunRequest(
                image: "busybox", command: ["sh", "-c", "cat; echo \"$GREETING\"; cat lib/data.txt; pwd; id -u"],
                stdin: "from stdin\n", env: ["GREETING": "hello"], files: ["lib/data.txt": "from a file\n"]))
            #expect(result.stdout == "from stdin\nhello\nfrom a file\n/work\n0\n", "\(result)")
            #expect(result.exitCode == 0)
        }
    }

    @Test func outputBeyondTheLimitIsTruncatedPerStream() async throws {
        try await withServer { client, _ in
            let result = try await client.result(RunRequest(
                image: "busybox", command: ["sh", "-c", "yes | head -c 100000; echo short >&2"],
                limits: RequestedLimits(outputBytes: 1000)))
            #expect(result.stdout.utf8.count == 1000 && result.stdoutTruncated)
            #expect(result.stderr == "short\n" && !result.stderrTruncated)
        }
    }

    @Test func theStreamingVariantSendsOutputThenTheResult() async throws {
        try await withServer { client, _ in
            let reply = try await client.run(RunRequest(image: "busybox", command: ["sh", "-c", "echo one; sleep 0.2; echo two >&2"]),
                                             path: "/v1/runs/stream")
            #expect(reply.status == 200 && reply.headers["Content-Type"].first == "text/event-stream")
            let events = reply.text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
            #expect(events.first == "event: stdout\ndata: {\"data\":\"one\\n\"}", "\(events)")
            #expect(events.dropFirst().first == "event: stderr\ndata: {\"data\":\"two\\n\"}", "\(events)")
            let exit = try #require(events.last)
            #expect(exit.hasPrefix("event: exit\ndata: "))
            let result = try JSONDecoder().decode(RunResult.self, from: Data(exit.dropFirst("event: exit\ndata: ".count).utf8))
            #expect(result.exitCode == 0 && result.stdout == "one\n" && result.stderr == "two\n")
        }
    }

    @Test func metricsCountRunsAndFailures() async throws {
        try await withServer { client, _ in
            _ = try await client.result(RunRequest(image: "busybox", command: ["true"]))
            _ = try await client.result(RunRequest(image: "busybox", command: ["false"]))
            _ = try await client.post("/v1/runs", json: #"{"image": "nonexistent", "command": ["true"]}"#)
            let metrics = try await client.get("/metrics")
            #expect(metrics.status == 200)
            for line in [#"code_runner_runs_total{outcome="ok"} 1"#, #"code_runner_runs_total{outcome="nonzero_exit"} 1"#,
                         #"code_runner_run_failures_total{kind="bad_request"} 1"#, "code_runner_containers_alive 0",
                         "code_runner_queue_depth 0", "code_runner_run_duration_seconds_count 2"] {
                #expect(metrics.text.contains(line), "\(line) in \(metrics.text)")
            }
        }
    }

    @Test func errorsSayWhatWasWrong() async throws {
        try await withServer({ $0.maxRequestBytes = 4096 }) { client, _ in
            var anonymous = client
            anonymous.key = nil
            var wrongKey = client
            wrongKey.key = "not-a-key"
            let cases: [(String, TestClient.Reply, Int, String, String)] = [
                ("no key", try await anonymous.get("/v1/images"), 401, "unauthorized", "Bearer"),
                ("wrong key", try await wrongKey.post("/v1/runs", json: "{}"), 401, "unauthorized", "not valid"),
                ("malformed JSON", try await client.post("/v1/runs", json: "{\"image\": "), 400, "malformed_json", "not valid JSON"),
                ("missing field", try await client.post("/v1/runs", json: #"{"image": "busybox"}"#), 400, "malformed_json", "command is missing"),
                ("wrong type", try await client.post("/v1/runs", json: #"{"image": "busybox", "command": "true"}"#), 400, "malformed_json",
                 "command must be an array"),
                ("unknown image", try await client.post("/v1/runs", json: #"{"image": "nonexistent:1", "command": ["true"]}"#), 400,
                 "unknown_image", "nonexistent:1"),
                ("memory above the maximum", try await client.post("/v1/runs", json: #"{"image": "busybox", "command": ["true"], "limits": {"memoryBytes": 1099511627776}}"#),
                 400, "bad_limits", "limits.memoryBytes 1099511627776 is above the server's maximum 1073741824"),
                ("zero wall time", try await client.post("/v1/runs", json: #"{"image": "busybox", "command": ["true"], "limits": {"wallTimeMs": 0}}"#),
                 400, "bad_limits", "limits.wallTimeMs must be above 0"),
                ("empty command", try await client.post("/v1/runs", json: #"{"image": "busybox", "command": []}"#), 400, "invalid_request",
                 "command must name a program"),
                ("file outside /work", try await client.post("/v1/runs", json: #"{"image": "busybox", "command": ["true"], "files": {"../x": ""}}"#),
                 400, "invalid_request", "must be relative"),
                ("too large", try await client.post("/v1/runs", json: "{\"image\": \"" + String(repeating: "x", count: 5000) + "\"}"), 413,
                 "request_too_large", "4096 bytes"),
                ("no registry", try await client.post("/v1/images/pull", json: #"{"image": "alpine:3"}"#), 400, "no_registry", "no registry"),
                ("no such route", try await client.get("/v1/nothing"), 404, "http_404", "Not Found"),
            ]
            for (name, reply, status, code, message) in cases {
                #expect(reply.status == status, "\(name): \(reply.status) \(reply.text)")
                #expect(reply.errorCode == code, "\(name): \(reply.text)")
                #expect(reply.text.contains(message) || reply.headers["WWW-Authenticate"].first == message, "\(name): \(reply.text)")
                #expect(reply.headers["Content-Type"].first == "application/json", "\(name)")
            }
        }
    }

    @Test func aFullQueueAnswers429WithRetryAfter() async throws {
        try await withServer({ $0.maxConcurrentRuns = 1; $0.maxQueuedRuns = 1 }) { client, _ in
            // Either may reach the slot first: both hold it long enough for the third to find
            // the queue full.
            async let first = client.result(RunRequest(image: "busybox", command: ["sleep", "2"]))
            async let second = client.result(RunRequest(image: "busybox", command: ["sleep", "2"]))
            // Both are in the server (one running, one queued) once the metrics say so.
            try await poll("the queue to hold a run") {
                try await client.get("/metrics").text.contains("code_runner_queue_depth 1")
            }
            let refused = try await client.run(RunRequest(image: "busybox", command: ["true"]))
            #expect(refused.status == 429 && refused.errorCode == "busy")
            #expect(refused.headers["Retry-After"].first == "1")
            let (firstCode, secondCode) = try await (first.exitCode, second.exitCode)
            #expect(firstCode == 0 && secondCode == 0)
        }
    }

    @Test func shutdownDrainsTheRunsInFlightThenRemovesItsContainers() async throws {
        try await withServer { client, shutdown in
            let run = Task { try await client.result(RunRequest(image: "busybox", command: ["sh", "-c", "sleep 1; echo done"])) }
            try await poll("the run to start") { try await client.get("/metrics").text.contains("code_runner_containers_alive 1") }
            await shutdown()
            let result = try await run.value
            #expect(result.stdout == "done\n" && result.exitCode == 0)
            // The client keeps retrying a refused connection until the request's deadline.
            try await poll("the server to stop") { (try? await client.request(.GET, "/healthz", timeout: .seconds(1))) == nil }
        }
    }

    @Test func containersACrashedInstanceLeftAreRemovedAtStart() async throws {
        let runtime = try await TestRuntime.runtime()
        var leftover = ContainerConfiguration(image: "busybox", command: ["true"])
        leftover.labels = [Runner.label: "crashed-instance"]
        let container = try await runtime.run(leftover)
        _ = try await container.wait()
        try await withServer { _, _ in
            try await poll("the leftover to be removed") { try await TestRuntime.leftovers().isEmpty }
        }
    }
}

/// Polls `condition` every 50 ms for up to 30 s.
func poll(_ what: String, _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(30)
    while try await !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out waiting for \(what)")
            return
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}
