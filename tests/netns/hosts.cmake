# The cluster itself: every host has its own hostname, address and scratch dir, reaches the
# others, and an MPI job started on node1 places ranks on both (tests/netns/hosts_test.sh).
add_test(NAME cluster.hosts COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/hosts_test.sh
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(cluster.hosts PROPERTIES FIXTURES_REQUIRED netns_cluster TIMEOUT 120)
list(APPEND netns_tests cluster.hosts)
