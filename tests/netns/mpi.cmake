# Multi-host mpirun (issue 17, engineer M's part), on the fixture's 2 hosts:
#   cluster.mpi_layout       rank_env_test over 2 hosts x 2 ranks and 1 + 2 ranks (local rank and
#                            size, node index and count, threads, rank_hosts); PFT_MPIRUN_IFACE
#   cluster.mpi_equivalence  the quickstart tasks, 20 steps: 2 hosts x 2 ranks == 1 host x 4
#                            ranks bit for bit (losses, evaluations, parameter hash); the layout
#                            line; MPI's TCP only on the cluster subnet between hosts
# (The binary goes as an argument: CMakeLists.txt sets every cluster test's ENVIRONMENT.)
add_test(NAME cluster.mpi_layout COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/rank_layout_test.sh
         $<TARGET_FILE:rank_env_test> WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(cluster.mpi_layout PROPERTIES FIXTURES_REQUIRED netns_cluster TIMEOUT 180)
add_test(NAME cluster.mpi_equivalence COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/multihost_train_test.sh
         WORKING_DIRECTORY ${PROJECT_SOURCE_DIR})
set_tests_properties(cluster.mpi_equivalence PROPERTIES FIXTURES_REQUIRED netns_cluster TIMEOUT 300)
list(APPEND netns_tests cluster.mpi_layout cluster.mpi_equivalence)
