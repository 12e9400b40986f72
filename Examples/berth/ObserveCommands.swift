import ArgumentParser
import ContainerKernel
import Containers
import FoundationEssentials

/// `berth ps`.
struct ListContainers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ps", abstract: "List containers.",
        discussion: "Filters: label=KEY, label=KEY=VALUE, name=TEXT, status=created|running|paused|exited; several are all applied. \(embeddedNote)")

    @OptionGroup var store: StoreOptions

    @Flag(name: [.customShort("a"), .customLong("all")], help: "Show every container (default: running and paused only).")
    var all = false

    @Flag(name: [.customShort("q"), .customLong("quiet")], help: "Print only the ids.")
    var quiet = false

    @Flag(name: .customLong("no-trunc"), help: "Print whole ids and commands.")
    var noTruncate = false

    @Option(name: [.customShort("f"), .customLong("filter")], help: "Filter: label=KEY[=VALUE], name=TEXT or status=STATUS.")
    var filters: [String] = []

    func run() async throws {
        var labels: [String: String?] = [:]
        var name: String?
        var status: ContainerStatus?
        for filter in filters {
            let (key, value) = try keyValue(filter)
            switch key {
            case "label":
                let (label, wanted) = try keyValue(value)
                labels[label] = value.contains("=") ? wanted : nil
            case "name": name = value
            case "status":
                guard let parsed = ContainerStatus(rawValue: value) else {
                    throw ValidationError("status filter takes created, running, paused or exited, not \"\(value)\"")
                }
                status = parsed
            default: throw ValidationError("unsupported filter \"\(key)\": use label, name or status")
            }
        }
        try await reportingContainerErrors {
            let containers = try store.openRuntime().list(all: all, labels: labels, name: name, status: status)
            if quiet {
                containers.forEach { print(noTruncate ? $0.id : String($0.id.prefix(12))) }
                return
            }
            let rows = containers.map { container -> [String] in
                let description = container.inspect()
                let words = (description.configuration.entrypoint ?? []) + (description.configuration.command ?? [])
                var command = "\"" + words.joined(separator: " ") + "\""
                if !noTruncate && command.count > 22 { command = String(command.prefix(19)) + "…\"" }
                return [noTruncate ? description.id : String(description.id.prefix(12)),
                        description.imageReference ?? String(description.image.prefix(19)), command,
                        ago(description.created), statusText(description.state), description.name]
            }
            printTable(header: ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"], rows: rows)
        }
    }

    /// Docker's status column: `Up 3 minutes (healthy)`, `Exited (0) 2 seconds ago`, `Created`.
    private func statusText(_ state: ContainerState) -> String {
        let health = state.health.map { " (\($0.rawValue))" } ?? ""
        switch state.status {
        case .created: return "Created"
        case .running: return "Up " + span(since: state.startedAt) + health
        case .paused: return "Up " + span(since: state.startedAt) + " (Paused)"
        case .exited: return "Exited (\(state.exitCode ?? 0)) " + (state.finishedAt.map(ago) ?? "")
        }
    }
}

/// `berth logs`.
struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs",
        abstract: "Print a container's output (its log, kept after it exits).", discussion: embeddedNote)

    @OptionGroup var store: StoreOptions

    @Flag(name: [.customShort("f"), .customLong("follow")], help: "Keep printing while the container runs.")
    var follow = false

    @Option(name: [.customShort("n"), .customLong("tail")], help: "Print only the last N lines (or all).")
    var tail = "all"

    @Option(help: "Print only lines since a time: RFC 3339 (2024-01-02T15:04:05Z) or a duration back from now (10m, 1h30m).")
    var since: String?

    @Flag(name: [.customShort("t"), .customLong("timestamps")], help: "Prefix each line with its time.")
    var timestamps = false

    @Argument(help: "The container's name, id or unique id prefix.")
    var container: String

    func run() async throws {
        let lines: Int?
        if tail == "all" {
            lines = nil
        } else {
            guard let count = Int(tail), count >= 0 else { throw ValidationError("--tail takes a number or all, not \"\(tail)\"") }
            lines = count
        }
        let start = try since.map { text -> Date in
            if let date = try? Date(text, strategy: .iso8601) { return date }
            let back = try parseDuration(text).components
            return Date().addingTimeInterval(-(Double(back.seconds) + Double(back.attoseconds) * 1e-18))
        }
        try await reportingContainerErrors {
            let container = try store.openRuntime().container(self.container)
            await printLogs(container.logs(follow: follow, since: start, tail: lines), timestamps: timestamps)
        }
    }
}

/// `berth inspect`.
struct InspectContainer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Print containers' configuration and state as a JSON array.",
        discussion: "Images are inspected with `berth image inspect`. \(embeddedNote)")

    @OptionGroup var store: StoreOptions
    @OptionGroup var names: ContainerArguments

    func run() async throws {
        var documents: [String] = []
        // Printed once at the end, so that the output is one JSON array even if a name fails.
        defer { print("[" + documents.joined(separator: ",\n") + "]") }
        try await forEachContainer(store, names) { container in
            documents.append(container.inspect().json)
        }
    }
}

/// `berth top`.
struct Top: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "List the processes running in a container.", discussion: embeddedNote)

    @OptionGroup var store: StoreOptions

    @Argument(help: "The container's name, id or unique id prefix.")
    var container: String

    func run() async throws {
        try await reportingContainerErrors {
            let processes = try store.openRuntime().container(container).top()
            printTable(header: ["PID", "CMD"], rows: processes.map { ["\($0.pid)", $0.command] })
        }
    }
}

/// `berth stats`.
struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Show containers' resource use.",
        discussion: "Without containers, shows every running one. CPU % is measured over one second. \(embeddedNote)")

    @OptionGroup var store: StoreOptions

    @Flag(name: .customLong("no-stream"), help: "Print one reading and exit (default: refresh every second).")
    var noStream = false

    @Argument(help: "Container names, ids or unique id prefixes.")
    var containers: [String] = []

    func run() async throws {
        try await reportingContainerErrors {
            let runtime = try store.openRuntime()
            let chosen = try containers.isEmpty ? runtime.list() : containers.map { try runtime.container($0) }
            var previous = try chosen.map { try $0.stats() }
            repeat {
                try await Task.sleep(for: .seconds(1))
                let current = try chosen.map { try $0.stats() }
                if !noStream { print("\u{1B}[2J\u{1B}[H", terminator: "") }
                printTable(
                    header: ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"],
                    rows: zip(chosen, zip(previous, current)).map { container, readings in
                        row(container, before: readings.0, after: readings.1)
                    })
                previous = current
            } while !noStream
        }
    }

    private func row(_ container: Container, before: ContainerStats, after: ContainerStats) -> [String] {
        let usage = after.cgroup
        let cpuTime = Double((usage.cpuUsageNanoseconds ?? 0) &- (before.cgroup.cpuUsageNanoseconds ?? 0))
        let wall = after.time.timeIntervalSince(before.time) * 1e9
        let memory = usage.memoryUsage ?? 0
        // The v1 "unlimited" limit is a huge page-aligned number: show the host's memory instead.
        let limit = min(usage.memoryLimit ?? .max, UInt64(ProcessInfo.processInfo.physicalMemory))
        return [
            String(container.id.prefix(12)), container.name,
            decimal(wall > 0 ? cpuTime / wall * 100 : 0, places: 2) + "%",
            bytes(memory) + " / " + bytes(limit),
            decimal(limit > 0 ? Double(memory) / Double(limit) * 100 : 0, places: 2) + "%",
            bytes(after.networkReceivedBytes) + " / " + bytes(after.networkSentBytes),
            bytes(usage.blockReadBytes ?? 0) + " / " + bytes(usage.blockWriteBytes ?? 0),
            "\(usage.pidsCurrent ?? 0)",
        ]
    }
}

/// `berth events`.
struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Print container events until interrupted.",
        discussion: "For now the runtime reports only the events of its own process's containers, so this prints nothing: other berth invocations' events are not shared across processes yet.")

    @OptionGroup var store: StoreOptions

    func run() async throws {
        try await reportingContainerErrors {
            let format = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
            for await event in try store.openRuntime().events() {
                let attributes = (event.attributes.merging(["name": event.name]) { own, _ in own })
                    .sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
                print("\(event.time.formatted(format)) container \(event.action.rawValue) \(event.containerID) (\(attributes))")
            }
        }
    }
}

// MARK: Formatting

/// Prints rows in columns, as Docker's tables do.
func printTable(header: [String], rows: [[String]]) {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    for row in all {
        let cells = row.enumerated().map { index, cell in
            index == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[index] + 3 - cell.count)
        }
        print(cells.joined())
    }
}

/// `3 minutes ago`, as Docker writes times.
func ago(_ date: Date) -> String {
    span(since: date) + " ago"
}

/// How long since `date`, in Docker's words: `Less than a second`, `5 seconds`, `About a minute`, `3 hours`.
func span(since date: Date?) -> String {
    let seconds = Int(Date().timeIntervalSince(date ?? Date()))
    switch seconds {
    case ..<1: return "Less than a second"
    case ..<60: return "\(seconds) seconds"
    case ..<120: return "About a minute"
    case ..<3600: return "\(seconds / 60) minutes"
    case ..<7200: return "About an hour"
    case ..<172_800: return "\(seconds / 3600) hours"
    default: return "\(seconds / 86400) days"
    }
}

/// Byte counts as Docker's stats show them: `1.5MiB`, `12kB`.
func bytes(_ count: UInt64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(count)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    // One decimal below 10, none above, as Docker prints sizes (%g would print 1.01e+03).
    return unit == 0 ? "\(count)B" : decimal(value, places: value < 10 ? 1 : 0) + units[unit]
}

/// A non-negative `value` rounded to `places` decimals, as printf's `%.Nf` prints it.
func decimal(_ value: Double, places: Int) -> String {
    var scale = 1
    for _ in 0..<places { scale *= 10 }
    let units = Int((value * Double(scale)).rounded())
    guard places > 0 else { return "\(units)" }
    let fraction = String(units % scale)
    return "\(units / scale)." + String(repeating: "0", count: places - fraction.count) + fraction
}
