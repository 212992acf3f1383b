# Node failures across hosts (docs/launching.md, "Node failures"; tests/netns/failures_test.sh):
# a host's processes killed, its link cut, a rank on it stalled inside a checkpoint save or the
# data store preparation; each ends the job with exit 3 within dist.timeout_s + 10 s, naming the
# lost host and ranks, with no process left on any host; after a crash or a cut link,
# train.resume: auto on the surviving host (4 -> 2 ranks) continues the reference run's exact
# data order.
set(netns_failures ${CMAKE_CURRENT_LIST_DIR}/failures_test.sh)
add_test(NAME cluster.failure_reference COMMAND ${netns_failures} reference
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(cluster.failure_reference PROPERTIES FIXTURES_REQUIRED netns_cluster
                     FIXTURES_SETUP netns_failure_reference TIMEOUT 240)
foreach(mode crash link stall stall_store)
  add_test(NAME cluster.failure_${mode} COMMAND ${netns_failures} ${mode}
           WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
  set_tests_properties(cluster.failure_${mode} PROPERTIES
                       FIXTURES_REQUIRED "netns_cluster;netns_failure_reference" TIMEOUT 300)
  list(APPEND netns_tests cluster.failure_${mode})
endforeach()
list(APPEND netns_tests cluster.failure_reference)
