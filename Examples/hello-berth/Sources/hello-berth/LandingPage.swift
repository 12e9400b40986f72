// The code of the Containers catalog's landing page (Containers.md) in
// Sources/Containers/Containers.docc, block by block in the article's order, so that
// `make check-consumer` compiles it as a dependent's code; scripts/check-doc-code checks that
// every block is here verbatim. Compiled, not run.
import Containers

func landingPage() async throws {
    let container = try await Container.run(image: "busybox", command: ["echo", "hello"])
    print(try await container.wait())                       // exited with code 0
    for await entry in container.logs() { print(entry.log, terminator: "") }
    try await container.remove()

    try await Container.withRunning(image: "busybox", command: ["sleep", "60"]) { container in
        let result = try await container.exec(["cat", "/etc/hostname"])
        print(result.standardOutput)
    }   // stopped and removed here, even on throw or cancellation
}
