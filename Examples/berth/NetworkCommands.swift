import ArgumentParser
import Containers
import FoundationEssentials
import Networking

/// `berth network …` and `berth port`, with Docker's names and flags, registered in ``Berth``.
let networkCommands: [any ParsableCommand.Type] = [NetworkCommand.self, Port.self]

/// Runs `body`, turning a ``NetworkError`` into a ``ValidationError`` that
/// `reportingContainerErrors` reports with exit status 125.
func reportingNetworkErrors<T>(_ body: () throws(NetworkError) -> T) throws -> T {
    do {
        return try body()
    } catch {
        throw ValidationError("\(error)")
    }
}

/// `berth network`: user-defined bridge networks.
struct NetworkCommand: AsyncParsableCommand, CommandGroup {
    static let configuration = CommandConfiguration(
        commandName: "network",
        abstract: "Manage networks.",
        subcommands: [
            NetworkCreate.self, NetworkList.self, NetworkInspect.self, NetworkRemove.self,
            NetworkConnect.self, NetworkDisconnect.self,
        ]
    )

    /// `--root` before the subcommand: `berth network --root R ls`.
    @OptionGroup var store: StoreOptions
}

/// A `berth network` subcommand, which takes `--root` before or after its name.
protocol NetworkSubcommand: GroupSubcommand where Group == NetworkCommand {}

struct NetworkCreate: AsyncParsableCommand, NetworkSubcommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a bridge network.")

    @ParentCommand var parent: NetworkCommand
    @OptionGroup var store: StoreOptions

    @Option(help: "Subnet in CIDR notation, such as 172.30.0.0/24 (default: a free one from Berth's pool).")
    var subnet: String?

    @Option(help: "IPv4 gateway, inside the subnet (default: the subnet's first address).")
    var gateway: String?

    @Flag(help: "Add a random unique local IPv6 /64 as well.")
    var ipv6 = false

    @Argument(help: "The network's name.")
    var name: String

    func run() async throws {
        try await reportingContainerErrors {
            let networks = try openRuntime().networks
            let network = try reportingNetworkErrors { () throws(NetworkError) in
                let subnet = try subnet.map { (text) throws(NetworkError) in try IPv4Subnet(text) }
                let gateway = try gateway.map { (text) throws(NetworkError) in try IPv4Address(text) }
                return try networks.create(name, subnet: subnet, gateway: gateway, ipv6: ipv6)
            }
            print(network.id)
        }
    }
}

struct NetworkList: AsyncParsableCommand, NetworkSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "ls", abstract: "List networks.", aliases: ["list"])

    @ParentCommand var parent: NetworkCommand
    @OptionGroup var store: StoreOptions

    @Flag(name: .shortAndLong, help: "Print only the network ids.")
    var quiet = false

    func run() async throws {
        try await reportingContainerErrors {
            let networks = try openRuntime().networks
            let all = try reportingNetworkErrors { () throws(NetworkError) in try networks.list() }
            if quiet {
                for network in all { print(String(network.id.prefix(12))) }
                return
            }
            printTable(
                header: ["NETWORK ID", "NAME", "DRIVER", "SUBNET"],
                rows: all.map { [String($0.id.prefix(12)), $0.name, $0.driver.rawValue, $0.subnet.description] })
        }
    }
}

/// A network and its endpoints as one JSON object: the configuration's fields plus `endpoints`.
struct InspectedNetwork: Encodable {
    var inspection: NetworkInspection

    enum CodingKeys: String, CodingKey { case endpoints }

    func encode(to encoder: any Encoder) throws {
        try inspection.configuration.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(inspection.endpoints, forKey: .endpoints)
    }
}

struct NetworkInspect: AsyncParsableCommand, NetworkSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Show networks and their endpoints as JSON.")

    @ParentCommand var parent: NetworkCommand
    @OptionGroup var store: StoreOptions

    @Argument(help: "The networks' names, ids or unique id prefixes.")
    var networks: [String]

    func run() async throws {
        try await reportingContainerErrors {
            let manager = try openRuntime().networks
            let inspections = try networks.map { name in
                try reportingNetworkErrors { () throws(NetworkError) in try manager.inspect(name) }
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(inspections.map(InspectedNetwork.init)), as: UTF8.self))
        }
    }
}

struct NetworkRemove: AsyncParsableCommand, NetworkSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "rm", abstract: "Remove networks.", aliases: ["remove"])

    @ParentCommand var parent: NetworkCommand
    @OptionGroup var store: StoreOptions

    @Argument(help: "The networks' names, ids or unique id prefixes.")
    var networks: [String]

    func run() async throws {
        try await reportingContainerErrors {
            let manager = try openRuntime().networks
            try eachReportingFailures(networks) { network in
                try reportingNetworkErrors { () throws(NetworkError) in try manager.remove(network) }
                print(network)
            }
        }
    }
}

struct NetworkConnect: AsyncParsableCommand, NetworkSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "connect", abstract: "Connect a running container to a network.", discussion: embeddedNote)

    @ParentCommand var parent: NetworkCommand
    @OptionGroup var store: StoreOptions

    @Option(help: "Another name peers on the network resolve to the container (repeatable).")
    var alias: [String] = []

    @Argument(help: "The network's name, id or unique id prefix.")
    var network: String

    @Argument(help: "The container's name, id or unique id prefix.")
    var container: String

    func run() async throws {
        try await reportingContainerErrors {
            let runtime = try openRuntime()
            let id = try runtime.container(container).id
            _ = try reportingNetworkErrors { () throws(NetworkError) in
                try runtime.networks.connect(containerID: id, network: network, aliases: alias)
            }
        }
    }
}

struct NetworkDisconnect: AsyncParsableCommand, NetworkSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "disconnect", abstract: "Disconnect a container from a network.", discussion: embeddedNote)

    @ParentCommand var parent: NetworkCommand
    @OptionGroup var store: StoreOptions

    @Argument(help: "The network's name, id or unique id prefix.")
    var network: String

    @Argument(help: "The container's name, id or unique id prefix.")
    var container: String

    func run() async throws {
        try await reportingContainerErrors {
            let runtime = try openRuntime()
            let id = try runtime.container(container).id
            try reportingNetworkErrors { () throws(NetworkError) in
                try runtime.networks.disconnect(containerID: id, network: network)
            }
        }
    }
}

struct Port: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "port",
        abstract: "List a container's published ports.", discussion: embeddedNote)

    @OptionGroup var store: StoreOptions

    @Argument(help: "The container's name, id or unique id prefix.")
    var container: String

    func run() async throws {
        try await reportingContainerErrors {
            let ports = try store.openRuntime().container(container).state.publishedPorts
            for port in ports {
                print("\(port.containerPort)/\(port.transport.rawValue) -> \(port.hostIP):\(port.hostPort)")
            }
        }
    }
}
