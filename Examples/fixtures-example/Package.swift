// swift-tools-version:6.1
//
// Real services as test fixtures in a package of its own: a PostgreSQL database and a busybox
// HTTP server started by the tests, reached with real clients (`psql` and URLSession).
// Depends on Berth by path here; a user's package names a version instead:
//
//     .package(url: "https://github.com/…/berth", from: "0.1.0")
//
// `make test` runs these tests (scripts/test-examples); the tests run as root on Linux, with
// Debian's busybox-static, postgresql and postgresql-client installed (scripts/install-deps).
import PackageDescription

let package = Package(
    name: "fixtures-example",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Berth", path: "../.."),
    ],
    targets: [
        .testTarget(
            name: "FixturesExampleTests",
            dependencies: [
                .product(name: "Containers", package: "Berth"),
                .product(name: "ContainerTesting", package: "Berth"),
            ]
        ),
    ]
)
