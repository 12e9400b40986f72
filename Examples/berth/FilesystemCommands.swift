import ArgumentParser
import Containers
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `berth diff`, `export` and `commit`: a container's filesystem against its image.
let filesystemCommands: [any ParsableCommand.Type] = [Diff.self, Export.self, Commit.self]

/// `berth diff`.
struct Diff: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the changes of a container's filesystem (A added, C changed, D deleted).",
        discussion: embeddedNote)

    @OptionGroup var store: StoreOptions
    @Argument(help: "The container (name or id).")
    var container: String

    func run() async throws {
        try await reportingContainerErrors {
            for change in try store.openRuntime().container(container).changes() { print(change) }
        }
    }
}

/// `berth export`.
struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a container's whole filesystem as a tar archive.", discussion: embeddedNote)

    @OptionGroup var store: StoreOptions
    @Option(name: .shortAndLong, help: "The tar file to write (default: standard output, if it is not a terminal).")
    var output: String?
    @Argument(help: "The container (name or id).")
    var container: String

    func run() async throws {
        try await reportingContainerErrors {
            let target = try store.openRuntime().container(container)
            guard let output else {
                guard isatty(1) == 0 else { throw ValidationError("refusing to write a tar archive to a terminal: use -o FILE") }
                try target.export(to: .standardOutput)
                return
            }
            let file = try FileDescriptor.open(output, .writeOnly, options: [.create, .truncate], permissions: [.ownerReadWrite, .groupRead, .otherRead])
            defer { try? file.close() }
            try target.export(to: file)
        }
    }
}

/// `berth commit`.
struct Commit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a new image from a container's changes.", discussion: embeddedNote)

    @OptionGroup var store: StoreOptions
    @Option(name: .shortAndLong, help: "The history comment of the new layer.")
    var message: String?
    @Argument(help: "The container (name or id).")
    var container: String
    @Argument(help: "The new image's name (REPOSITORY[:TAG]); without one the image stays unnamed.")
    var reference: String?

    func run() async throws {
        try await reportingContainerErrors {
            let image = try await store.openRuntime().container(container).commit(as: reference, comment: message)
            print(image.id)
        }
    }
}
