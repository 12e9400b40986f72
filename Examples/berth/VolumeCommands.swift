import ArgumentParser
import Containers
import FoundationEssentials

/// `berth volume …`, with Docker's names and flags, registered in ``Berth``.
let volumeCommands: [any ParsableCommand.Type] = [VolumeCommand.self]

/// `berth volume`: named volumes, mounted with `run -v NAME:/path`.
struct VolumeCommand: AsyncParsableCommand, CommandGroup {
    static let configuration = CommandConfiguration(
        commandName: "volume",
        abstract: "Manage volumes.",
        subcommands: [VolumeCreate.self, VolumeList.self, VolumeInspect.self, VolumeRemove.self, VolumePrune.self]
    )

    /// `--root` before the subcommand: `berth volume --root R ls`.
    @OptionGroup var store: StoreOptions
}

struct VolumeCreate: AsyncParsableCommand, GroupSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a volume (an existing one of the name is kept as it is).")

    @ParentCommand var parent: VolumeCommand
    @OptionGroup var store: StoreOptions

    @Option(help: "Set a label (KEY=value).")
    var label: [String] = []

    @Argument(help: "The volume's name (default: 64 random hex digits).")
    var name: String?

    func run() async throws {
        try await reportingContainerErrors {
            let labels = try Dictionary(label.map(keyValue), uniquingKeysWith: { _, last in last })
            print(try openRuntime().createVolume(name: name, labels: labels).name)
        }
    }
}

struct VolumeList: AsyncParsableCommand, GroupSubcommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List volumes.", aliases: ["list"])

    @ParentCommand var parent: VolumeCommand
    @OptionGroup var store: StoreOptions

    @Flag(name: .shortAndLong, help: "Print only the volume names.")
    var quiet = false

    func run() async throws {
        try await reportingContainerErrors {
            let volumes = try openRuntime().volumes()
            if quiet {
                for volume in volumes { print(volume.name) }
                return
            }
            printTable(header: ["DRIVER", "VOLUME NAME"], rows: volumes.map { ["local", $0.name] })
        }
    }
}

struct VolumeInspect: AsyncParsableCommand, GroupSubcommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "Show volumes as JSON.")

    @ParentCommand var parent: VolumeCommand
    @OptionGroup var store: StoreOptions

    @Argument(help: "The volumes' names.")
    var volumes: [String]

    func run() async throws {
        try await reportingContainerErrors {
            let runtime = try openRuntime()
            let found = try volumes.map { try runtime.volume($0) }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            encoder.dateEncodingStrategy = .iso8601
            print(String(decoding: try encoder.encode(found), as: UTF8.self))
        }
    }
}

struct VolumeRemove: AsyncParsableCommand, GroupSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "rm", abstract: "Remove volumes that no container uses.", aliases: ["remove"])

    @ParentCommand var parent: VolumeCommand
    @OptionGroup var store: StoreOptions

    @Flag(name: .shortAndLong, help: "Do not fail for a volume that does not exist (a volume in use is still kept).")
    var force = false

    @Argument(help: "The volumes' names.")
    var volumes: [String]

    func run() async throws {
        try await reportingContainerErrors {
            let runtime = try openRuntime()
            try eachReportingFailures(volumes) { volume in
                try runtime.removeVolume(volume, force: force)
                print(volume)
            }
        }
    }
}

struct VolumePrune: AsyncParsableCommand, GroupSubcommand {
    static let configuration = CommandConfiguration(commandName: "prune", abstract: "Remove every volume no container uses.")

    @ParentCommand var parent: VolumeCommand
    @OptionGroup var store: StoreOptions

    @Flag(name: .shortAndLong, help: "Do not ask for confirmation.")
    var force = false

    func run() async throws {
        guard confirmed("This will remove all volumes not used by at least one container.", force: force) else { return }
        try await reportingContainerErrors {
            let removed = try openRuntime().pruneVolumes()
            print("Deleted Volumes:")
            removed.forEach { print($0) }
        }
    }
}
