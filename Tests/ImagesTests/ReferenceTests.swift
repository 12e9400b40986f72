import Images
import Testing

struct ReferenceTests {
    @Test(arguments: [
        ("busybox", "docker.io/library/busybox:latest"),
        ("library/busybox:1.36", "docker.io/library/busybox:1.36"),
        ("index.docker.io/foo/bar", "docker.io/foo/bar:latest"),
        ("localhost/a", "localhost/a:latest"),
        ("host:5000/a/b:tag", "host:5000/a/b:tag"),
        ("ghcr.io/o/r@sha256:" + String(repeating: "a", count: 64), "ghcr.io/o/r@sha256:" + String(repeating: "a", count: 64)),
        ("r:t@sha256:" + String(repeating: "b", count: 64), "docker.io/library/r:t@sha256:" + String(repeating: "b", count: 64)),
        ("a-b__c/d.e-f", "docker.io/a-b__c/d.e-f:latest"),
                ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest"),
    ])
    func referencesNormalizeLikeDocker(_ input: String, _ expected: String) throws {
        #expect(try ImageReference(parsing: input).description == expected)
    }

    @Test(arguments: [
        ("", "reference is empty"),
        ("Busybox", "repository name must be lowercase"),
        ("a:", "invalid tag"),
        ("a@sha256:abc", "invalid digest"),
        ("a//b", "invalid repository name"),
        ("-a", "invalid repository name"),
        (String(repeating: "f", count: 64), "64-byte hexadecimal"),
        ("host:/a", "invalid"),
    ])
    func malformedReferencesAreTypedErrorsQuotingTheInput(_ input: String, _ why: String) {
        #expect {
            _ = try ImageReference(parsing: input)
        } throws: { error in
            guard let error = error as? ImageError else { return false }
            return error.code == .invalidReference && error.description.contains("\"\(input)\"")
                && error.description.contains(why)
        }
    }

    @Test func platformsMatchLikeContainerd() throws {
        let arm64 = try Platform(parsing: "linux/arm64")
        #expect(arm64.matches(Platform(os: "linux", architecture: "arm64", variant: "v8")))
        #expect(!arm64.matches(Platform(os: "linux", architecture: "amd64")))
        #expect(try Platform(parsing: "linux/x86_64").architecture == "amd64")
        #expect(throws: ImageError.self) { try Platform(parsing: "linux") }
    }
}
