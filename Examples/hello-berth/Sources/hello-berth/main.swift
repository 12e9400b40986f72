// The README's "Depending on Berth" code, compiled by CI as a dependent's program
// (scripts/check-doc-code checks that it is the README's block verbatim).
import Containers

// Pulls the image when it is missing; the container is a child of this process.
let container = try await Container.run(image: "busybox", command: ["echo", "hello"])
print(try await container.wait())          // exited with code 0: exit codes are results, not errors

try await Container.withRunning(image: "busybox", command: ["sleep", "60"]) { container in
    let result = try await container.exec(["cat", "/etc/hostname"])
    print(result.standardOutput)
}   // stopped and removed here, even if the body throws
